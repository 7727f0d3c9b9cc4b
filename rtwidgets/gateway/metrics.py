"""Gateway counters and their Prometheus exposition.

The hot path only bumps plain ``int`` attributes of :class:`GatewayMetrics` (no locks,
no label lookups); a custom collector turns them into Prometheus families when
``/metrics`` is scraped. Each gateway has its own ``CollectorRegistry``, so several
gateways in one process (tests, notebooks) never clash.

``rtwidgets_gateway_start_time_seconds`` is the unix time (the gateway host's wall clock) at
which the gateway last started listening, as Prometheus' ``process_start_time_seconds`` is for a
process: uptime is ``time() - start``, and a scraper that sees it change knows the gateway
restarted. It is exported once the gateway has started (:meth:`GatewayMetrics.started`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rtwidgets.core.rate_meter import RateMeter

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_RATE_WINDOW = 10.0  # seconds over which publish_rate is averaged


class GatewayMetrics:
    """Counters of one gateway. ``gauges`` supplies live values at scrape time."""

    def __init__(
        self,
        gauges: Callable[[], dict[str, float]],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._gauges = gauges
        self._clock = clock
        self._wall_clock = wall_clock
        # Unix time of the last start (None until the gateway has started once).
        self.start_time: float | None = None
        self.connections_total = 0
        self.messages_published = 0
        self.deliveries = 0
        self.slow_consumer_closes = 0
        self.idle_closes = 0
        self.auth_failures = 0
        self.frames_dropped_closed = 0  # frames for a connection that was no longer open
        self.errors: Counter[str] = Counter()
        # messages_published read at each publish_rate() call, one mark per second at most.
        self._publishes = RateMeter(_RATE_WINDOW, clock(), resolution=1.0)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def error(self, code: str) -> None:
        """Count one error frame sent with ``code``."""
        self.errors[code] += 1

    def started(self) -> None:
        """Record that the gateway started listening now (exported as its start time)."""
        self.start_time = self._wall_clock()

    def publish_rate(self) -> float:
        """Stored + ephemeral publishes per second over the last ~10 s."""
        now = self._clock()
        self._publishes.observe_total(self.messages_published, now)
        return self._publishes.rate(now)

    def render(self) -> bytes:
        """Prometheus text exposition of this gateway."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict[str, Any]:
        """Counter values as a plain dict (merged into ``Gateway.stats()``)."""
        return {
            "connections_total": self.connections_total,
            "messages_published": self.messages_published,
            "deliveries": self.deliveries,
            "errors": sum(self.errors.values()),
            "errors_by_code": dict(self.errors),
            "slow_consumer_closes": self.slow_consumer_closes,
            "idle_closes": self.idle_closes,
            "auth_failures": self.auth_failures,
            "frames_dropped_closed": self.frames_dropped_closed,
            "publish_rate": self.publish_rate(),
            "start_time": self.start_time,
        }


class _Collector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        live = m._gauges()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield gauge("rtwidgets_connections", "Open client connections.", live.get("connections", 0))
        yield counter("rtwidgets_connections_accepted", "Client connections accepted.", m.connections_total)
        yield gauge(
            "rtwidgets_channels", "Channels with at least one local subscriber.", live.get("channels", 0)
        )
        yield gauge(
            "rtwidgets_subscriptions", "Channel subscriptions held by clients.", live.get("subscriptions", 0)
        )
        yield counter(
            "rtwidgets_messages_published", "Messages accepted for publishing.", m.messages_published
        )
        yield counter(
            "rtwidgets_messages_delivered", "Frames written to subscribers by fan-out.", m.deliveries
        )
        errors = CounterMetricFamily("rtwidgets_errors", "Error frames sent, by code.", labels=["code"])
        for code, count in sorted(m.errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield counter("rtwidgets_slow_consumer_closes", "Clients closed with 4008.", m.slow_consumer_closes)
        yield counter("rtwidgets_idle_closes", "Clients closed with 4009.", m.idle_closes)
        yield counter("rtwidgets_auth_failures", "Handshakes refused with 4001.", m.auth_failures)
        yield counter(
            "rtwidgets_frames_dropped_closed",
            "Frames not written because their connection was no longer open.",
            m.frames_dropped_closed,
        )
        yield gauge(
            "rtwidgets_outbound_queue_bytes_max",
            "Largest unsent write buffer among open connections.",
            live.get("outbound_buffer_max_bytes", 0),
        )
        yield gauge("rtwidgets_publish_rate", "Publishes per second (10 s average).", m.publish_rate())
        if m.start_time is not None:
            yield gauge(
                "rtwidgets_gateway_start_time_seconds",
                "Unix time at which the gateway last started listening.",
                m.start_time,
            )
