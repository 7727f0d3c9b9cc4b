"""Inspector charts: the bounded ring of chart points (rates from the frame counters, unknown RTT
and counter resets as gaps) with explicit times, and the widget on a real connection: points
arrive with the snapshot ticks (one comm update per tick at most, fewer on an idle connection)
and ``history`` + ``tail`` give a view every point."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from rtwidgets.models import Channel
from rtwidgets.widgets import inspector as inspector_module
from rtwidgets.widgets.inspector import CHART_POINTS, CHART_SERIES, Inspector, InspectorSeries

from .conftest import wait_until


def _stats(received: int = 0, sent: int = 0, rtt: float | None = None, queue: int = 0) -> dict[str, Any]:
    return {"frames_received": received, "frames_sent": sent, "rtt": rtt, "queue_size": queue}


def test_points_rates_and_gaps() -> None:
    series = InspectorSeries(10)
    series.add(_stats(received=10, sent=4), now=100.0, wall=1000.0)
    series.add(_stats(received=30, sent=5, rtt=0.0031, queue=2), now=100.5, wall=1000.5)
    series.add(_stats(received=31, sent=9, rtt=0.0042), now=101.0, wall=1001.0)
    cols = series.columns()
    assert set(cols) == {"t", *CHART_SERIES}
    assert cols["t"] == [1000.0, 1000.5, 1001.0]
    assert cols["in_rate"] == [None, 40.0, 2.0]  # 20 frames over 0.5 s, then 1
    assert cols["out_rate"] == [None, 2.0, 8.0]
    assert cols["rtt_ms"] == [None, 3.1, 4.2]  # ms; unknown before the first pong
    assert cols["queue_size"] == [0.0, 2.0, 0.0]
    # A counter going down (a new client): that interval's rates are not known, never negative.
    series.add(_stats(received=2, sent=1), now=101.5, wall=1001.5)
    assert series.columns(last=1)["in_rate"] == [None] and series.columns(last=1)["out_rate"] == [None]
    series.add(_stats(received=4, sent=1), now=102.0, wall=1002.0)
    assert series.columns(last=1)["in_rate"] == [4.0]
    assert series.columns(last=0) == {name: [] for name in ("t", *CHART_SERIES)}
    assert series.columns(last=8)["t"] == series.columns()["t"]  # more than it holds: all of it
    # Missing or junk values: unknown RTT, an empty queue.
    series.add({"rtt": float("nan"), "queue_size": None}, now=103.0, wall=1003.0)
    assert series.columns(last=1)["rtt_ms"] == [None] and series.columns(last=1)["queue_size"] == [0.0]


def test_ring_is_bounded_and_time_moves_forward() -> None:
    series = InspectorSeries(5)
    for i in range(12):
        series.add(_stats(received=3 * i), now=float(i), wall=500.0 + i)
    assert len(series) == 5
    assert series.columns()["t"] == [507.0, 508.0, 509.0, 510.0, 511.0]
    assert series.columns()["in_rate"] == [3.0] * 5
    with pytest.raises(ValueError, match="forward in time"):
        series.add(_stats(), now=11.0, wall=600.0)
    with pytest.raises(ValueError, match=">= 2"):
        InspectorSeries(1)


def _record_updates(widget: Inspector) -> list[set[str]]:
    """The trait names of every state update the widget sends over its comm, in order."""
    updates: list[set[str]] = []
    original = widget._send

    def spy(msg: dict[str, Any], buffers: Any = None) -> None:
        if msg.get("method") == "update":
            updates.append(set(msg.get("state", {})))
        original(msg, buffers=buffers)

    widget._send = spy  # type: ignore[method-assign]
    return updates


def test_inspector_charts_follow_a_busy_connection(connect: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A whole-ring send every 4 ticks (2 s) instead of 10 s, so the test sees both kinds.
    monkeypatch.setattr(inspector_module, "CHART_FULL_REFRESH", 2.0)
    conn = connect("alice")
    inspector = Inspector(conn)
    updates = _record_updates(inspector)
    try:
        assert inspector.chart_window == (CHART_POINTS - 1) * inspector_module.REFRESH_INTERVAL
        ch = Channel(conn, "watched").wait_subscribed()
        wait_until(lambda: len(inspector.points()["t"]) >= 1, what="a first point")  # traffic after it
        for i in range(20):
            ch.publish({"i": i})
        def peak(series: str) -> float:
            return max((v or 0.0 for v in inspector.points()[series]), default=0.0)

        wait_until(lambda: peak("in_rate") > 0, what="frames in charted")
        wait_until(lambda: peak("out_rate") > 0, what="frames out charted")
        wait_until(lambda: len(inspector.history.get("t", [])) >= 4, what="the whole ring sent")
        wait_until(lambda: len(inspector.points()["t"]) >= 8, what="more points")
        points = inspector.points()
        assert set(points) == {"t", *CHART_SERIES}
        assert all(b > a for a, b in itertools.pairwise(points["t"]))  # each point once, in order
        assert all(v is None or v >= 0 for s in ("in_rate", "out_rate") for v in points[s])
        assert all(isinstance(v, float) and v >= 0 for v in points["queue_size"])
        chart_updates = [u for u in updates if u & {"tail", "history"}]
        assert any("history" in u for u in chart_updates) and any("history" not in u for u in chart_updates)
    finally:
        inspector.close()


def test_an_idle_connection_sends_fewer_updates_than_ticks_and_loses_no_point(
    connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inspector_module, "REFRESH_INTERVAL", 0.05)  # 20 ticks/s: a short test
    monkeypatch.setattr(inspector_module, "CHART_IDLE_SEND", 0.4)  # idle points sent every 8 ticks
    monkeypatch.setattr(inspector_module, "CHART_FULL_REFRESH", 100.0)  # only tails
    conn = connect("carol")
    inspector = Inspector(conn)
    updates = _record_updates(inspector)
    try:
        wait_until(lambda: len(inspector._series) >= 3, what="first ticks")  # the snapshot settled
        start_ticks, start_updates = len(inspector._series), len(updates)
        wait_until(lambda: len(inspector._series) >= start_ticks + 40, what="40 idle ticks")
        ticks = len(inspector._series) - start_ticks
        sent = sum(1 for u in updates[start_updates:] if "tail" in u)
        # One send per 8 idle ticks (give or take the coalescer merging two): far fewer than ticks.
        assert 1 <= sent <= ticks // 8 + 2, (sent, ticks)
        # The held points are sent later, none lost: the view catches up with the ring.
        ring = inspector._series.columns()["t"]
        wait_until(lambda: set(ring) <= set(inspector.points()["t"]), what="the view has every point")
        assert all(b > a for a, b in itertools.pairwise(inspector.points()["t"]))
    finally:
        inspector.close()


def test_the_ring_keeps_at_most_a_minute(monkeypatch: pytest.MonkeyPatch, connect: Any) -> None:
    monkeypatch.setattr(inspector_module, "REFRESH_INTERVAL", 0.02)  # ticks fast, same ring size
    inspector = Inspector(connect("bob"))
    try:
        wait_until(lambda: len(inspector._series) == CHART_POINTS, what="a full ring")
        wait_until(lambda: inspector._series.columns()["t"][0] > 0 and inspector.tail.get("t"), what="ticks")
        first = inspector._series.columns()["t"][0]
        wait_until(lambda: inspector._series.columns()["t"][0] > first, what="the oldest point dropped")
        assert len(inspector._series) == CHART_POINTS
        assert len(inspector.points()["t"]) <= CHART_POINTS
    finally:
        inspector.close()
