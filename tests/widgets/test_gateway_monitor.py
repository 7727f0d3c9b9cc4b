"""GatewayMonitor: the pure parts (URL mapping, parsing /metrics and stats(), rates and counter
resets, the bounded history) with explicit times, and the widget on a real embedded gateway
(read with stats(), and through its real /metrics), unreachable and recovering.

The gateway in another process, and its restart, are in test_gateway_monitor_remote.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

import rtwidgets
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.metrics import GatewayMetrics
from rtwidgets.sync_client import connect
from rtwidgets.widgets import gateway_monitor
from rtwidgets.widgets.gateway_monitor import (
    COUNTERS,
    GAUGES,
    SERIES,
    GatewayMonitor,
    GatewaySample,
    MonitorHistory,
    metrics_url,
    sample_from_metrics,
    sample_from_stats,
)
from tests._support.net import free_port

from .conftest import wait_until


def _sample(
    published: float = 0, delivered: float = 0, errors: dict[str, float] | None = None, **gauges: float
) -> GatewaySample:
    counters = dict.fromkeys(COUNTERS, 0.0)
    counters.update(messages_published=published, messages_delivered=delivered)
    return GatewaySample(
        gauges={name: float(gauges.get(name, 0)) for name in GAUGES},
        counters=counters,
        errors=dict(errors or {}),
    )


def _increasing(times: list[float | None]) -> bool:
    """Every time is known and later than the one before."""
    known = [t for t in times if t is not None]
    return len(known) == len(times) and all(b > a for a, b in itertools.pairwise(known))


# ---------------------------------------------------------------------- pure logic


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:8765", "http://127.0.0.1:8765/metrics"),
        ("ws://127.0.0.1:8765/", "http://127.0.0.1:8765/metrics"),
        ("wss://gw.example.org/ws", "https://gw.example.org/metrics"),
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/metrics"),
        ("https://gw.example.org/", "https://gw.example.org/metrics"),
        ("http://proxy:9000/gateway/metrics", "http://proxy:9000/gateway/metrics"),
        ("  WS://[::1]:80  ", "http://[::1]:80/metrics"),
    ],
)
def test_metrics_url_maps_gateway_urls(url: str, expected: str) -> None:
    assert metrics_url(url) == expected


@pytest.mark.parametrize("url", ["", "127.0.0.1:8765", "ftp://host/metrics", "http://", "ws:///x"])
def test_metrics_url_refuses_what_is_not_a_gateway_url(url: str) -> None:
    with pytest.raises(ValueError, match="ws://, wss://, http:// or https:// URL with a host"):
        metrics_url(url)


def test_sample_from_the_gateways_real_exposition() -> None:
    live = {"connections": 3, "channels": 2, "subscriptions": 5, "outbound_buffer_max_bytes": 1024}
    metrics = GatewayMetrics(lambda: dict(live))
    metrics.connections_total = 7
    metrics.messages_published = 40
    metrics.deliveries = 120
    metrics.slow_consumer_closes = 1
    metrics.auth_failures = 2
    metrics.error("bad_json")
    metrics.error("bad_json")
    metrics.error("rate_limited")
    sample = sample_from_metrics(metrics.render().decode())
    assert sample.gauges == {"connections": 3, "channels": 2, "subscriptions": 5, "outbound_bytes": 1024}
    assert sample.counters["connections_accepted"] == 7
    assert sample.counters["messages_published"] == 40
    assert sample.counters["messages_delivered"] == 120
    assert sample.counters["slow_consumer_closes"] == 1
    assert sample.counters["auth_failures"] == 2
    assert sample.errors == {"bad_json": 2, "rate_limited": 1}
    assert sample.error_total == 3


def test_uptime_from_the_exported_start_time() -> None:
    metrics = GatewayMetrics(lambda: {}, wall_clock=lambda: 1_700_000_000.0)
    older = sample_from_metrics(metrics.render().decode(), wall=1_700_000_100.0)
    assert older.start_time is None and older.uptime is None  # not started: no start time
    metrics.started()
    sample = sample_from_metrics(metrics.render().decode(), wall=1_700_000_100.0)
    assert sample.start_time == 1_700_000_000.0
    assert sample.uptime == 100.0
    # The scraping host's clock behind the gateway's: never a negative uptime.
    assert sample_from_metrics(metrics.render().decode(), wall=1_699_999_990.0).uptime == 0.0
    text = metrics.render().decode().replace("1.7e+09", "NaN")
    with pytest.raises(ValueError, match="rtwidgets_gateway_start_time_seconds is nan"):
        sample_from_metrics(text)


def test_a_new_start_time_is_a_restart_even_when_no_counter_went_down() -> None:
    def started(at: float, published: float) -> GatewaySample:
        base = _sample(published=published)
        return GatewaySample(gauges=base.gauges, counters=base.counters, start_time=at, uptime=1.0)

    hist = MonitorHistory(10)
    hist.add(started(500.0, published=10), now=0.0, wall=1000.0)
    hist.add(started(500.0, published=20), now=1.0, wall=1001.0)
    assert hist.restarts == 0 and hist.current()["publish_rate"] == 10.0
    # Restarted (stopped and started in its process: counters kept, or counted past the old
    # values): the increase over this interval is not known, so no rate, not a made-up one.
    hist.add(started(1001.5, published=35), now=2.0, wall=1002.0)
    assert hist.restarts == 1
    assert hist.current()["publish_rate"] is None
    assert hist.current()["start_time"] == 1001.5
    assert hist.columns()["publish_rate"] == [None, 10.0, None]
    hist.add(started(1001.5, published=45), now=3.0, wall=1003.0)
    assert hist.restarts == 1 and hist.current()["publish_rate"] == 10.0
    # A new start time with counters from 0 again: one restart, the new value is the increase.
    hist.add(started(1003.5, published=4), now=4.0, wall=1004.0)
    assert hist.restarts == 2 and hist.current()["publish_rate"] == 4.0


def test_a_gateway_restarted_in_its_process_is_seen_through_its_metrics(
    monitors: list[GatewayMonitor],
) -> None:
    gw = Gateway(port=free_port()).start()
    try:
        mon = GatewayMonitor(gw.url, interval=0.2)
        monitors.append(mon)
        wait_until(lambda: mon.status == "ok" and mon.current.get("start_time") is not None, what="scraped")
        first = mon.current["start_time"]
        _traffic(gw, publishes=5)
        wait_until(lambda: mon.current.get("messages_published", 0) >= 5, what="publishes scraped")
        gw.stop()
        gw.start()  # same port, same counters: only the start time says it restarted
        wait_until(lambda: mon.restarts == 1 and mon.status == "ok", what="restart seen")
        assert mon.current["start_time"] > first
        assert mon.current["messages_published"] >= 5  # the counters were kept
        assert mon.current["uptime"] >= 0
    finally:
        gw.stop()


def test_sample_from_metrics_refuses_another_servers_metrics() -> None:
    other = "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n"
    with pytest.raises(ValueError, match="not an rtwidgets gateway's /metrics: missing rtwidgets_"):
        sample_from_metrics(other)
    with pytest.raises(ValueError, match="not Prometheus text"):
        sample_from_metrics('{"status": "ok"}\n')


def test_sample_from_stats_reads_every_gauge_and_counter() -> None:
    gw = Gateway(port=0)  # never started: stats() still has every key
    sample = sample_from_stats(gw.stats())
    assert set(sample.gauges) == set(GAUGES)
    assert set(sample.counters) == set(COUNTERS)
    assert sample.errors == {}
    with pytest.raises(ValueError, match="no number 'connections'"):
        sample_from_stats({**gw.stats(), "connections": "three"})


def test_rates_come_from_counter_differences() -> None:
    hist = MonitorHistory(10)
    hist.add(_sample(published=100, delivered=300, connections=2), now=10.0, wall=1000.0)
    assert hist.current()["publish_rate"] is None  # one sample: no rate yet
    later = _sample(published=150, delivered=400, errors={"bad_json": 4}, connections=3)
    hist.add(later, now=12.0, wall=1002.0)
    cur = hist.current()
    assert cur["publish_rate"] == 25.0  # 50 publishes over 2 s
    assert cur["delivery_rate"] == 50.0
    assert cur["error_rate"] == 2.0
    assert cur["connections"] == 3
    assert cur["messages_published"] == 150
    assert hist.errors_by_code() == {"bad_json": {"total": 4, "rate": 2.0}}
    cols = hist.columns()
    assert set(cols) == {"t", *SERIES}
    assert cols["t"] == [1000.0, 1002.0]
    assert cols["publish_rate"] == [None, 25.0]
    assert cols["connections"] == [2, 3]
    assert hist.restarts == 0


def test_a_counter_reset_is_a_restart_not_a_negative_rate() -> None:
    hist = MonitorHistory(10)
    hist.add(_sample(published=1000, delivered=5000, errors={"bad_json": 9}), now=0.0, wall=0.0)
    hist.add(_sample(published=1010, delivered=5040, errors={"bad_json": 9}), now=1.0, wall=1.0)
    # The gateway restarted: its counters began again at 0 and counted a little since.
    hist.add(_sample(published=4, delivered=8, errors={"bad_json": 1}), now=2.0, wall=2.0)
    assert hist.restarts == 1
    cur = hist.current()
    assert cur["publish_rate"] == 4.0  # the new value is the increase since the restart
    assert cur["delivery_rate"] == 8.0
    assert cur["error_rate"] == 1.0
    assert hist.errors_by_code()["bad_json"] == {"total": 1, "rate": 1.0}
    for series in ("publish_rate", "delivery_rate", "error_rate", "slow_close_rate"):
        assert all(v is None or v >= 0 for v in hist.columns()[series]), series
    # Only one error code going down is a reset too (the totals may even grow meanwhile).
    hist.add(_sample(published=5, delivered=9, errors={"bad_json": 1}), now=3.0, wall=3.0)
    hist.add(_sample(published=6, delivered=10, errors={"bad_json": 0, "rate_limited": 5}), now=4.0, wall=4.0)
    assert hist.restarts == 2
    assert hist.current()["error_rate"] == 5.0


def test_history_is_bounded_and_time_moves_forward() -> None:
    hist = MonitorHistory(5)
    for i in range(20):
        hist.add(_sample(published=i * 10), now=float(i), wall=100.0 + i)
    assert len(hist) == 5
    cols = hist.columns()
    assert cols["t"] == [115.0, 116.0, 117.0, 118.0, 119.0]
    assert cols["publish_rate"] == [10.0] * 5
    assert hist.columns(last=8)["t"] == cols["t"]  # more than it holds (a long tail): all of it
    with pytest.raises(ValueError, match="forward in time"):
        hist.add(_sample(), now=19.0, wall=200.0)
    with pytest.raises(ValueError, match=">= 2"):
        MonitorHistory(1)


def test_values_are_rounded_to_keep_updates_small() -> None:
    hist = MonitorHistory(3)
    hist.add(_sample(published=0), now=0.0, wall=0.0)
    hist.add(_sample(published=10), now=3.0, wall=3.0)
    assert hist.current()["publish_rate"] == 3.333


# ---------------------------------------------------------------------- the widget


@pytest.fixture
def monitors() -> Iterator[list[GatewayMonitor]]:
    made: list[GatewayMonitor] = []
    yield made
    for m in made:
        m.close()


def _traffic(gateway: Gateway, publishes: int) -> None:
    """Real traffic: a subscriber, ``publishes`` messages to it, one malformed frame."""
    with connect(gateway.url, token=gateway.token("alice", publish=["*"])) as conn:
        room = conn.subscribe("room")
        for i in range(publishes):
            room.publish({"i": i})
        with ws_connect(f"{gateway.url}/?token={gateway.token('mallory')}", open_timeout=10) as raw:
            raw.recv(timeout=10)  # "connected"
            raw.send("this is not json")
            raw.recv(timeout=10)  # the error frame


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="needs a Gateway or a gateway's URL, got int"):
        GatewayMonitor(8765)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="URL with a host"):
        GatewayMonitor("localhost:8765")
    with pytest.raises(ValueError, match=r"interval must be a finite number of seconds >= 0\.1"):
        GatewayMonitor("ws://127.0.0.1:1", interval=0)
    with pytest.raises(ValueError, match="interval must be a number"):
        GatewayMonitor("ws://127.0.0.1:1", interval=True)
    with pytest.raises(ValueError, match="window must be a finite number of seconds >= 2"):
        GatewayMonitor("ws://127.0.0.1:1", interval=2, window=1)
    with pytest.raises(ValueError, match="at most 9999"):
        GatewayMonitor("ws://127.0.0.1:1", interval=0.1, window=3600)
    assert rtwidgets.GatewayMonitor is GatewayMonitor


@pytest.mark.parametrize("how", ["embedded", "metrics url"])
def test_monitor_shows_a_live_gateway(gateway: Gateway, monitors: list[GatewayMonitor], how: str) -> None:
    source: Any = gateway if how == "embedded" else gateway.url
    mon = GatewayMonitor(source, interval=0.2)
    monitors.append(mon)
    expected = f"embedded gateway {gateway.url}" if how == "embedded" else metrics_url(gateway.url)
    assert mon.source == expected
    wait_until(lambda: mon.status == "ok" and len(mon.points()["t"]) >= 2, what="first samples")
    assert mon.error == ""
    assert mon.current["connections"] == 0
    _traffic(gateway, publishes=30)
    wait_until(lambda: mon.current.get("messages_published", 0) >= 30, what="publishes counted")
    wait_until(lambda: mon.current.get("messages_delivered", 0) >= 30, what="deliveries counted")
    wait_until(lambda: mon.errors_by_code.get("bad_json", {}).get("total") == 1, what="error by code")
    hist = mon.points()
    assert set(hist) == {"t", *SERIES}
    # The publishes show up as a rate somewhere in the history, and no rate is negative.
    assert max(v or 0 for v in hist["publish_rate"]) > 0
    assert max(v or 0 for v in hist["error_rate"]) > 0
    for series in ("publish_rate", "delivery_rate", "error_rate", "slow_close_rate"):
        assert all(v is None or v >= 0 for v in hist[series]), series
    assert _increasing(hist["t"])
    # stats() and /metrics both say when the gateway started (/metrics as a unix time).
    assert mon.current["uptime"] > 0
    assert mon.current["start_time"] == round(gateway.stats()["start_time"], 3)
    assert mon.restarts == 0
    assert mon._sync.flushes >= 2  # through the coalesced sync, like every widget update


def test_history_is_bounded_by_the_window(gateway: Gateway, monitors: list[GatewayMonitor]) -> None:
    mon = GatewayMonitor(gateway, interval=0.1, window=0.3)
    monitors.append(mon)
    wait_until(lambda: mon.samples >= 8, what="more samples than the window holds")
    assert len(mon.points()["t"]) == 4  # ceil(0.3 / 0.1) + 1


def test_the_whole_history_is_sent_every_full_refresh_and_the_tail_in_between(
    gateway: Gateway, monitors: list[GatewayMonitor], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_monitor, "FULL_REFRESH", 0.5)  # every 5 samples at 0.1 s
    mon = GatewayMonitor(gateway, interval=0.1, window=1.0)
    monitors.append(mon)
    sent: list[tuple[int, int]] = []  # (points in history, points in tail) at each flush
    mon.observe(lambda _: sent.append((len(mon.history["t"]), len(mon.tail["t"]))), names=["tail"])
    wait_until(lambda: mon.samples >= 25, what="several full refreshes")
    assert sent, "no update reached the widget"
    assert max(tail for _, tail in sent) <= 4  # the tail is reset by each full send
    assert max(history for history, _ in sent) == 11  # the whole window: ceil(1.0 / 0.1) + 1
    points = mon.points()
    assert len(points["t"]) == 11
    assert _increasing(points["t"])
    assert points["t"][-1] == mon._hist.columns()["t"][-1]  # nothing lost between the two


def test_unreachable_metrics_is_a_clear_error_and_retried(monitors: list[GatewayMonitor]) -> None:
    port = free_port()
    mon = GatewayMonitor(f"ws://127.0.0.1:{port}", interval=0.2)
    monitors.append(mon)
    wait_until(lambda: mon.status == "error" and mon.failures >= 3, what="failures, retried")
    assert mon.error.startswith(f"http://127.0.0.1:{port}/metrics: unreachable")
    assert "retrying every 0.2 s" in mon.error
    assert mon.points()["t"] == []
    gw = Gateway(port=port).start()  # the gateway comes up: the monitor recovers by itself
    try:
        wait_until(lambda: mon.status == "ok", what="recovered")
        assert mon.error == ""
        assert mon.current["connections"] == 0
    finally:
        gw.stop()
    wait_until(lambda: mon.status == "error", what="gateway gone again")
    assert len(mon.points()["t"]) >= 1  # the history is kept through an outage


def test_another_servers_page_is_an_error_not_a_crash(
    gateway: Gateway, monitors: list[GatewayMonitor]
) -> None:
    base = gateway.url.replace("ws://", "http://")
    mon = GatewayMonitor(f"{base}/healthz", interval=0.2)  # JSON, not Prometheus text
    missing = GatewayMonitor(f"{base}/nothing-here", interval=0.2)
    monitors.extend([mon, missing])
    wait_until(lambda: mon.status == "error" and missing.status == "error", what="both refused")
    assert mon.error.startswith(f"{base}/healthz: not an rtwidgets gateway's /metrics")
    assert "HTTP 404" in missing.error


def test_embedded_gateway_not_running_is_shown_and_picked_up(monitors: list[GatewayMonitor]) -> None:
    gw = Gateway(port=0)
    mon = GatewayMonitor(gw, interval=0.2)
    monitors.append(mon)
    assert mon.source == "embedded gateway (not started)"
    wait_until(lambda: mon.status == "error", what="not running shown")
    assert "the gateway is not running" in mon.error
    gw.start()
    try:
        wait_until(lambda: mon.status == "ok", what="started gateway picked up")
        assert mon.source == f"embedded gateway {gw.url}"
    finally:
        gw.stop()


def test_the_synced_interval_trait_does_not_change_the_sampling(
    gateway: Gateway, monitors: list[GatewayMonitor]
) -> None:
    mon = GatewayMonitor(gateway, interval=0.2)
    monitors.append(mon)
    wait_until(lambda: mon.samples >= 1, what="sampling")
    mon.interval = 1000.0  # what a browser could write back: it describes, it does not steer
    seen = mon.samples
    wait_until(lambda: mon.samples >= seen + 3, what="still sampling every 0.2 s")


def test_close_stops_sampling(gateway: Gateway) -> None:
    mon = GatewayMonitor(gateway, interval=0.1)
    wait_until(lambda: mon.samples >= 2, what="sampling")
    mon.close()
    wait_until(lambda: len(mon._tasks) == 0, what="the sampling task ended")
    assert mon.closed
