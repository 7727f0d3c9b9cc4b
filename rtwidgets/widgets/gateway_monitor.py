"""``GatewayMonitor``: a live view of a gateway, embedded or remote through its ``/metrics``.

Rules of this module:

* Sampling runs as one task on the runtime loop, one sample per ``interval`` (the next starts
  ``interval`` after the previous one started, never overlapping). An embedded
  :class:`~rtwidgets.gateway.Gateway` is read with ``stats()`` **on the gateway's own loop**
  (its counters are not thread-safe). A remote gateway is scraped with ``urllib`` in a worker
  thread (``asyncio.to_thread``): neither a kernel thread nor the runtime loop ever blocks on
  the network.
* Rates come from the difference of a counter between two samples over the loop-clock time
  between them. A counter that went *down* means the gateway restarted (its counters start
  again at 0): the increase is then the new value, as Prometheus' ``rate()`` counts it, never a
  negative rate. A gateway that exports its start time (``rtwidgets_gateway_start_time_seconds``,
  or ``start_time`` in ``stats()``) restarted when that changed, also when no counter went down
  (it counted past its old values, or it was stopped and started in its process, keeping its
  counters): the increase over that interval is not known, so its rates are ``None`` (a gap).
  ``restarts`` counts both kinds, at most one per sample.
* Uptime: ``stats()``' own for an embedded gateway; for a remote one the scrape's wall-clock
  time minus the exported start time (both hosts' clocks: a skew between them shows in it;
  never below 0), ``None`` for a gateway that does not export it.
* The history is bounded: at most ``ceil(window / interval) + 1`` points, oldest dropped.
* A failed sample (unreachable, not an rtwidgets ``/metrics``, gateway stopped) sets ``status``
  to ``"error"`` with a message saying what failed, keeps the history and retries at the next
  interval; the next good sample sets ``status`` back to ``"ok"``. Nothing is raised into the
  loop and nothing is lost silently (failures are also logged once per outage).
* Traits reach the browser through the widget's coalesced sync (the shared message budget):
  one batch per sample, values rounded. The whole history (``history``) is sent only every
  :data:`FULL_REFRESH` seconds; the samples in between go as ``tail``, the points taken since
  that send (cumulative, so a coalesced "latest wins" flush loses nothing). A view shows
  ``history`` + ``tail``: a view opened at any time has every point.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families
from traitlets import Dict, Float, Int, Unicode

from rtwidgets.models._binding import TaskGroup
from rtwidgets.runtime import await_on_loop
from rtwidgets.widgets._base import RealtimeWidget

if TYPE_CHECKING:
    from rtwidgets.gateway import Gateway

__all__ = [
    "COUNTERS",
    "GAUGES",
    "GatewayMonitor",
    "GatewaySample",
    "MonitorHistory",
    "metrics_url",
    "sample_from_metrics",
    "sample_from_stats",
]

log = logging.getLogger("rtwidgets.widgets")

# The monitor's names for the gateway's gauges and counters, with their Prometheus sample names
# (rtwidgets/gateway/metrics.py) and their Gateway.stats() keys.
GAUGES: dict[str, tuple[str, str]] = {
    "connections": ("rtwidgets_connections", "connections"),
    "channels": ("rtwidgets_channels", "channels"),
    "subscriptions": ("rtwidgets_subscriptions", "subscriptions"),
    "outbound_bytes": ("rtwidgets_outbound_queue_bytes_max", "outbound_buffer_max_bytes"),
}
COUNTERS: dict[str, tuple[str, str]] = {
    "connections_accepted": ("rtwidgets_connections_accepted_total", "connections_total"),
    "messages_published": ("rtwidgets_messages_published_total", "messages_published"),
    "messages_delivered": ("rtwidgets_messages_delivered_total", "deliveries"),
    "slow_consumer_closes": ("rtwidgets_slow_consumer_closes_total", "slow_consumer_closes"),
    "idle_closes": ("rtwidgets_idle_closes_total", "idle_closes"),
    "auth_failures": ("rtwidgets_auth_failures_total", "auth_failures"),
    "frames_dropped_closed": ("rtwidgets_frames_dropped_closed_total", "frames_dropped_closed"),
}
ERRORS_SAMPLE = "rtwidgets_errors_total"
START_SAMPLE = "rtwidgets_gateway_start_time_seconds"  # optional: older gateways lack it
# Counters charted as rates (per second): chart name -> counter ("errors" is the sum of codes).
RATES: dict[str, str] = {
    "publish_rate": "messages_published",
    "delivery_rate": "messages_delivered",
    "error_rate": "errors",
    "slow_close_rate": "slow_consumer_closes",
}
SERIES: tuple[str, ...] = ("connections", "channels", "subscriptions", "outbound_bytes", *RATES)

MAX_POINTS = 10_000  # a window/interval asking for more is refused
# Seconds between two sends of the whole history; each sample in between sends only the tail.
# 5 minutes at 1 s are ~20 KB of JSON: sent every sample, that would be most of the traffic.
FULL_REFRESH = 30.0
MAX_BODY = 4 * 1024 * 1024  # a /metrics answer larger than this is not an rtwidgets gateway's


@dataclass(frozen=True)
class GatewaySample:
    """One reading of a gateway: gauge and counter values by the monitor's names
    (:data:`GAUGES`, :data:`COUNTERS`) and the error counters by code."""

    gauges: dict[str, float]
    counters: dict[str, float]
    errors: dict[str, float] = field(default_factory=dict)
    uptime: float | None = None  # seconds since the gateway started, when the source says
    start_time: float | None = None  # unix time the gateway started, when the source says

    @property
    def error_total(self) -> float:
        return sum(self.errors.values())


def sample_from_stats(stats: Mapping[str, Any]) -> GatewaySample:
    """A :class:`GatewaySample` from :meth:`Gateway.stats() <rtwidgets.gateway.Gateway.stats>`.

    Args:
        stats: the dict ``Gateway.stats()`` returned.

    Raises:
        ValueError: a value is missing or not a number.
    """

    def number(key: str) -> float:
        value = stats.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"Gateway.stats() has no number {key!r} (got {value!r})")
        return float(value)

    errors = stats.get("errors_by_code", {})
    if not isinstance(errors, Mapping):
        raise ValueError(f"Gateway.stats() 'errors_by_code' is not a dict (got {errors!r})")
    uptime = stats.get("uptime")
    start = stats.get("start_time")
    return GatewaySample(
        gauges={name: number(key) for name, (_, key) in GAUGES.items()},
        counters={name: number(key) for name, (_, key) in COUNTERS.items()},
        errors={str(code): float(n) for code, n in errors.items()},
        uptime=float(uptime) if isinstance(uptime, (int, float)) else None,
        start_time=float(start) if isinstance(start, (int, float)) and not isinstance(start, bool) else None,
    )


def sample_from_metrics(text: str, wall: float | None = None) -> GatewaySample:
    """A :class:`GatewaySample` from a gateway's Prometheus text exposition (``/metrics``).

    The start time (``rtwidgets_gateway_start_time_seconds``) is optional: without it (an older
    gateway) ``start_time`` and ``uptime`` are ``None``.

    Args:
        text: the body of ``GET /metrics``.
        wall: the unix time of the scrape, for ``uptime`` (default: now).

    Raises:
        ValueError: the text is not Prometheus exposition, or lacks one of the rtwidgets
            gateway's gauges or counters (e.g. the URL is another server's ``/metrics``).
    """
    values: dict[str, float] = {}
    errors: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == ERRORS_SAMPLE:
                    code = sample.labels.get("code", "")
                    errors[code] = errors.get(code, 0.0) + float(sample.value)
                elif not sample.labels:
                    values[sample.name] = float(sample.value)
    except (ValueError, IndexError, KeyError, TypeError) as exc:  # the parser's ways of refusing
        raise ValueError(f"not an rtwidgets gateway's /metrics: not Prometheus text ({exc})") from exc
    wanted = {name: prom for name, (prom, _) in (GAUGES | COUNTERS).items()}
    missing = sorted(prom for prom in wanted.values() if prom not in values)
    if missing:
        shown = ", ".join(missing[:3]) + ("…" if len(missing) > 3 else "")
        raise ValueError(f"not an rtwidgets gateway's /metrics: missing {shown}")
    start = values.get(START_SAMPLE)
    if start is not None and not math.isfinite(start):
        raise ValueError(f"not an rtwidgets gateway's /metrics: {START_SAMPLE} is {start}")
    uptime = None
    if start is not None:
        uptime = max(0.0, (time.time() if wall is None else wall) - start)
    return GatewaySample(
        gauges={name: values[GAUGES[name][0]] for name in GAUGES},
        counters={name: values[COUNTERS[name][0]] for name in COUNTERS},
        errors=errors,
        uptime=uptime,
        start_time=start,
    )


def metrics_url(url: str) -> str:
    """The ``/metrics`` URL of a gateway given by its ``ws(s)://`` or ``http(s)://`` URL.

    ``ws://host:port[/path]`` -> ``http://host:port/metrics`` (``wss`` -> ``https``);
    ``http://host:port`` (no path) -> ``http://host:port/metrics``; an ``http(s)`` URL with a
    path is used as given (a gateway behind a proxy may serve it elsewhere).

    Args:
        url: the gateway's URL.

    Raises:
        ValueError: not an ``http``, ``https``, ``ws`` or ``wss`` URL with a host.
    """
    parts = urllib.parse.urlsplit(url.strip())
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(
            f"GatewayMonitor needs a gateway's ws://, wss://, http:// or https:// URL with a host, "
            f"got {url!r}"
        )
    path = parts.path
    if parts.scheme.lower() in ("ws", "wss") or path in ("", "/"):
        path = "/metrics"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _round(value: float) -> float:
    # Four significant digits are plenty for a sparkline and keep each update small.
    if value == 0 or not math.isfinite(value):
        return 0.0
    return float(f"{value:.4g}")


class MonitorHistory:
    """The last ``max_points`` samples as chart columns, with rates computed from counters.

    Pure logic (times are passed in). :meth:`add` takes each sample with ``now`` (a monotonic
    clock, for rates) and ``wall`` (epoch seconds, for the time axis).

    Args:
        max_points: how many points to keep (>= 2).

    Raises:
        ValueError: ``max_points`` < 2.
    """

    def __init__(self, max_points: int) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points}")
        self.max_points = max_points
        self._points: deque[dict[str, float | None]] = deque(maxlen=max_points)
        self._last: GatewaySample | None = None
        self._last_now = 0.0
        self.restarts = 0
        self.latest_rates: dict[str, float | None] = dict.fromkeys(RATES)
        self.latest_error_rates: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._points)

    def add(self, sample: GatewaySample, now: float, wall: float) -> None:
        """Append ``sample`` taken at ``now``; rates are over the time since the previous one.

        Raises:
            ValueError: ``now`` is not later than the previous sample's.
        """
        prev = self._last
        rates: dict[str, float | None] = dict.fromkeys(RATES)
        error_rates: dict[str, float] = {}
        if prev is not None:
            dt = now - self._last_now
            if not dt > 0:
                raise ValueError(f"samples must move forward in time: {now} after {self._last_now}")
            old = {**prev.counters, "errors": prev.error_total}
            new = {**sample.counters, "errors": sample.error_total}
            # Counters only go down when the gateway restarted; then all started again at 0.
            reset = any(new[k] < old[k] for k in old) or any(
                n < prev.errors.get(code, 0.0) for code, n in sample.errors.items()
            )
            # A new start time is a restart even when no counter went down (see the rules).
            new_start = (
                prev.start_time is not None
                and sample.start_time is not None
                and sample.start_time != prev.start_time
            )
            if reset or new_start:
                self.restarts += 1

            def increase(before: float, after: float) -> float:
                return after if reset else after - before

            if reset or not new_start:  # else: the increase is not known, the rates stay None
                for chart, counter in RATES.items():
                    rates[chart] = increase(old[counter], new[counter]) / dt
                for code, n in sample.errors.items():
                    error_rates[code] = increase(prev.errors.get(code, 0.0), n) / dt
        self._last, self._last_now = sample, now
        self.latest_rates, self.latest_error_rates = rates, error_rates
        point: dict[str, float | None] = {"t": round(wall, 3)}
        point.update({name: _round(value) for name, value in sample.gauges.items()})
        point.update({name: None if r is None else _round(r) for name, r in rates.items()})
        self._points.append(point)

    def columns(self, last: int | None = None) -> dict[str, list[float | None]]:
        """The history as ``{"t": [...], <series>: [...]}``, oldest first (``None``: no rate yet);
        only its ``last`` points when given."""
        points = list(self._points)
        if last is not None:
            points = points[max(0, len(points) - last) :] if last > 0 else []
        return {name: [p.get(name) for p in points] for name in ("t", *SERIES)}

    def current(self) -> dict[str, Any]:
        """The newest values: gauges, counter totals and rates (``{}`` before the first sample)."""
        sample = self._last
        if sample is None:
            return {}
        out: dict[str, Any] = {name: _round(v) for name, v in sample.gauges.items()}
        out.update({name: _round(v) for name, v in sample.counters.items()})
        out["errors"] = _round(sample.error_total)
        out.update({name: None if r is None else _round(r) for name, r in self.latest_rates.items()})
        out["uptime"] = None if sample.uptime is None else round(sample.uptime, 1)
        out["start_time"] = None if sample.start_time is None else round(sample.start_time, 3)
        out["restarts"] = self.restarts
        return out

    def errors_by_code(self) -> dict[str, dict[str, float | None]]:
        """``{code: {"total": n, "rate": per second or None}}`` of the newest sample."""
        sample = self._last
        if sample is None:
            return {}
        return {
            code: {"total": _round(n), "rate": _maybe_round(self.latest_error_rates.get(code))}
            for code, n in sorted(sample.errors.items())
        }


def _maybe_round(value: float | None) -> float | None:
    return None if value is None else _round(value)


def _check_seconds(name: str, value: object, minimum: float) -> None:
    """Raise ValueError unless ``value`` is a finite number of seconds >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"{name} must be a finite number of seconds >= {minimum:g}, got {value!r}")


def _fetch(url: str, timeout: float) -> str:
    """GET ``url`` (blocking: runs in a worker thread) and return its body as text."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ValueError(f"answer larger than {MAX_BODY} bytes: not an rtwidgets gateway's /metrics")
    return body.decode("utf-8", errors="replace")


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, OSError):
        return f"unreachable ({exc.strerror or exc})"
    return str(exc) or type(exc).__name__


class GatewayMonitor(RealtimeWidget):
    """A live view of a gateway: connections, channels, subscriptions, publish, delivery, error
    and slow-consumer-close rates over the last ``window`` seconds as small charts, and a table
    of current values and errors by code.

    Works for a gateway in this process (a :class:`~rtwidgets.gateway.Gateway`, read with
    ``stats()``) or in another one (its URL: the ``/metrics`` page is scraped). A restarted
    gateway's counters start again at 0, or its start time changes: that is counted in
    ``restarts``, never shown as a negative rate. ``current["uptime"]`` is the time since the
    gateway started (``None`` for a gateway that does not export its start time). An
    unreachable gateway shows ``status == "error"`` with a message, and the
    monitor keeps retrying every ``interval``.

    Synced traits: ``source`` (what is monitored), ``status`` (``"starting"``, ``"ok"`` or
    ``"error"``), ``error`` (the last failure, ``""`` when ok), ``history`` (chart columns, sent
    whole every ``FULL_REFRESH`` seconds) and ``tail`` (the points since; show both),
    ``current`` (newest values), ``errors_by_code``, ``restarts``, ``interval``, ``window``.

    Args:
        gateway_or_url: a ``Gateway``, or a gateway's ``ws://``/``wss://`` URL (mapped to its
            ``/metrics``) or ``http(s)://`` URL (``/metrics`` when it has no path).
        interval: seconds between samples (finite, >= 0.1).
        window: seconds of history kept and charted (>= ``interval``; at most
            ``MAX_POINTS`` samples).
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        TypeError: ``gateway_or_url`` is neither a ``Gateway`` nor a string.
        ValueError: a bad URL, ``interval`` or ``window``.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

    _bundle = "gateway_monitor"

    source = Unicode("").tag(sync=True)
    status = Unicode("starting").tag(sync=True)
    error = Unicode("").tag(sync=True)
    history = Dict().tag(sync=True)
    tail = Dict().tag(sync=True)
    current = Dict().tag(sync=True)
    errors_by_code = Dict().tag(sync=True)
    restarts = Int(0).tag(sync=True)
    interval = Float(1.0).tag(sync=True)
    window = Float(300.0).tag(sync=True)

    def __init__(
        self, gateway_or_url: Gateway | str, interval: float = 1.0, window: float = 300.0, **kwargs: Any
    ) -> None:
        from rtwidgets.gateway import Gateway  # lazy: the widgets import without the gateway

        if isinstance(gateway_or_url, Gateway):
            self._gateway: Gateway | None = gateway_or_url
            self._url: str | None = None
            source = self._source_of(gateway_or_url)
        elif isinstance(gateway_or_url, str):
            self._gateway = None
            self._url = metrics_url(gateway_or_url)
            source = self._url
        else:
            raise TypeError(
                f"GatewayMonitor needs a Gateway or a gateway's URL, got {type(gateway_or_url).__name__}"
            )
        _check_seconds("interval", interval, 0.1)
        _check_seconds("window", window, interval)
        points = math.ceil(window / interval) + 1
        if points > MAX_POINTS:
            raise ValueError(
                f"window / interval = {points - 1} samples: at most {MAX_POINTS - 1}; "
                "use a longer interval or a shorter window"
            )
        # The sampling period is fixed here: the synced traits only describe it (a browser could
        # write them; a value from there must not change how often the kernel samples).
        self._interval = float(interval)
        self._hist = MonitorHistory(points)
        self._full_every = max(1, math.ceil(FULL_REFRESH / interval))
        self._since_full = 0  # samples taken since history was last sent whole
        self._tasks = TaskGroup("GatewayMonitor")
        self._failing = False
        self.samples = 0  # good samples taken (for tests and notebooks)
        self.failures = 0  # failed samples
        super().__init__(
            source=source,
            interval=float(interval),
            window=float(window),
            history=self._hist.columns(),
            tail=self._hist.columns(last=0),
            **kwargs,
        )
        self._on_close(self._tasks.cancel_all)
        self._run(self._start)

    @staticmethod
    def _source_of(gateway: Gateway) -> str:
        return f"embedded gateway {gateway.url if gateway.running else '(not started)'}"

    def points(self) -> dict[str, list[float | None]]:
        """The whole history now, as ``history`` + ``tail`` show it (``{"t": [...], ...}``)."""
        history, tail = self.history, self.tail
        newest = history.get("t", [])[-1:] or [-math.inf]
        keep = [i for i, t in enumerate(tail.get("t", [])) if t > newest[0]]
        cut = -self._hist.max_points  # the history sent last may hold points the window has dropped
        return {
            name: (list(history.get(name, [])) + [tail[name][i] for i in keep])[cut:]
            for name in ("t", *SERIES)
        }

    def __repr__(self) -> str:
        return f"<GatewayMonitor {self.source} status={self.status}>"

    # ------------------------------------------------------------------ runtime thread

    def _start(self) -> None:
        if not self.closed:
            self._tasks.spawn(self._poll())

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.closed:
            started = loop.time()
            await self._sample_once(loop)
            await asyncio.sleep(max(0.0, started + self._interval - loop.time()))

    async def _sample_once(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            sample = await self._read()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is shown, logged once per outage, and retried
            self._failed(exc)
            return
        self._hist.add(sample, loop.time(), time.time())
        self.samples += 1
        if self._failing:
            log.info("GatewayMonitor: %s answers again", self.source)
        self._failing = False
        # An embedded gateway may have been started after the monitor: its URL is known now.
        source = self._source_of(self._gateway) if self._gateway is not None else self.source
        self._since_full += 1
        values: dict[str, Any] = {}
        if self._since_full >= self._full_every:
            self._since_full = 0
            values["history"] = self._hist.columns()
        # One set() per sample: one batch, one comm message.
        self._sync.set(
            **values,
            source=source,
            status="ok",
            error="",
            tail=self._hist.columns(last=self._since_full),
            current=self._hist.current(),
            errors_by_code=self._hist.errors_by_code(),
            restarts=self._hist.restarts,
        )

    async def _read(self) -> GatewaySample:
        if self._gateway is not None:
            return await self._read_embedded(self._gateway)
        assert self._url is not None
        # A scrape slower than a few intervals is a failure, not a queue of late samples.
        timeout = min(10.0, max(2.0, 2 * self._interval))
        text = await asyncio.to_thread(_fetch, self._url, timeout)
        return sample_from_metrics(text, wall=time.time())

    async def _read_embedded(self, gateway: Gateway) -> GatewaySample:
        # The gateway's counters belong to its loop (the runtime's, when started with start()).
        loop = gateway._loop
        if loop is None or not gateway.running:
            raise RuntimeError("the gateway is not running")

        async def read() -> dict[str, Any]:
            return gateway.stats()

        # Bounded: a gateway loop that stops under us must not hang the monitor.
        stats = await asyncio.wait_for(await_on_loop(loop, read), timeout=max(2.0, 2 * self._interval))
        return sample_from_stats(stats)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        message = f"{self.source}: {_describe_failure(exc)}; retrying every {self._interval:g} s"
        if not self._failing:
            log.warning("GatewayMonitor: %s", message)
        self._failing = True
        self._sync.set(status="error", error=message)
