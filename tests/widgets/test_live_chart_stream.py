"""LiveChart's data messages: stable decimation, ``window``/``append`` with ``seq`` and ``tail``.

:class:`ViewSeries` applies the messages with the front end's own code (``ChartSeries`` from
``js/src/live_chart.js``, run under Node); what it rebuilds must equal ``chart.x`` /
``chart.y``. Samples are pushed from the runtime thread in one call per step, so each step is
one flush and the stride history (hence every expected message) does not depend on scheduling.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from rtwidgets.runtime import get_runtime
from rtwidgets.widgets import LiveChart
from rtwidgets.widgets.live_chart import choose_stride
from tests._support.js_chart import ViewSeries, floats

from .conftest import wait_until


def on_loop(fn: Any) -> Any:
    """Run ``fn()`` on the runtime thread (where every flush happens) and return its result."""

    async def call() -> Any:
        return fn()

    return get_runtime().run(call(), 10)


def record(chart: LiveChart) -> list[tuple[dict[str, Any], list[bytes], int]]:
    """Record every data message the chart sends: (content, buffers, stride when sent)."""
    sent: list[tuple[dict[str, Any], list[bytes], int]] = []
    original = chart._send

    def spy(msg: dict[str, Any], buffers: Any = None) -> None:
        content = msg.get("content")
        if msg.get("method") == "custom" and content.get("type") in ("window", "append"):
            json.dumps(content, allow_nan=False)  # what Jupyter's JSON packer accepts
            sent.append((content, [bytes(b) for b in buffers], chart.stride))
        original(msg, buffers=buffers)

    chart._send = spy
    return sent


def push_step(chart: LiveChart, samples: list[tuple[float, float]]) -> None:
    """Push ``samples`` ((t, y) pairs) in one runtime-thread call and wait until they are shown."""
    delivered = chart.stats.get("delivered", 0) + len(samples)
    on_loop(lambda: [chart.push(y, t=t) for t, y in samples])
    wait_until(
        lambda: chart.stats.get("delivered") == delivered and chart.stats["buffered"] == 0,
        what=f"{delivered} samples delivered",
    )


def check_view(chart: LiveChart, view: ViewSeries, sent: list[Any], applied: int) -> int:
    """Apply the messages sent since ``applied``; the view must equal chart.x / chart.y."""

    def compare() -> tuple[list[float], list[float], list[Any]]:
        return floats(chart.x), floats(chart.y), list(sent)  # consistent: no flush in between

    x, y, messages = on_loop(compare)
    for content, buffers, _stride in messages[applied:]:
        assert view.apply(content, buffers) in ("window", "append")
    assert view.shown() == (x, y)
    return len(messages)


def test_choose_stride_has_hysteresis() -> None:
    assert choose_stride(1, 0, 99) == 1
    assert choose_stride(1, 99, 99) == 1
    assert choose_stride(1, 100, 99) == 2  # raised to the smallest stride that fits
    # Around the 1 <-> 2 edge a steady stream keeps its stride ...
    assert all(choose_stride(2, n, 99) == 2 for n in range(80, 199))
    assert choose_stride(2, 79, 99) == 1  # ... lowered only well under the cap
    assert choose_stride(3, 198, 99) == 3
    assert choose_stride(3, 297, 99) == 3
    assert choose_stride(3, 299, 99) == 4
    assert choose_stride(4, 200, 99) == 4  # 50 points: not under half of the cap
    assert choose_stride(4, 196, 99) == 3  # 49 points: lowered to what fits 80 % of the cap
    assert choose_stride(4, 120, 99) == 2
    with pytest.raises(ValueError, match="cap"):
        choose_stride(1, 10, 0)


def test_steady_stream_sends_appends_and_views_rebuild_the_series() -> None:
    chart = LiveChart(max_points=50, window_ms=100)
    sent = record(chart)
    view = ViewSeries()
    applied = 0
    t = 0
    try:
        for _step in range(25):  # 30 samples a step, 1 ms apart: the 100 ms window fills at step 4
            push_step(chart, [(float(t + k), float((t + k) % 17)) for k in range(30)])
            t += 30
            applied = check_view(chart, view, sent, applied)
            assert len(chart.x) // 8 <= 50
        types = [c["type"] for c, _b, _s in sent]
        strides = [s for _c, _b, s in sent]
        seqs = [c["seq"] for c, _b, _s in sent]
        assert seqs == list(range(1, len(sent) + 1))
        # A window only first and when the stride changed (the window grew past the cap twice).
        for i, kind in enumerate(types):
            assert (kind == "window") == (i == 0 or strides[i] != strides[i - 1]), (i, types, strides)
        assert types.count("window") == 3 and strides[-1] == 3
        # Once the window is full, only appends: each trims the front and adds ~10 points.
        steady = [c for c, _b, s in sent[-15:]]
        assert all(c["type"] == "append" for c in steady)
        assert any(c["drop"] > 0 for c in steady)
        total = sum(len(b[0]) for _c, b, _s in sent[-15:])
        assert total < 15 * 20 * 8  # far less than 15 whole windows (34 points each)
        assert chart.windows_sent == 3
    finally:
        chart.close()


def test_out_of_order_sample_among_shown_ones_forces_a_window() -> None:
    chart = LiveChart(max_points=50, window_ms=1000)
    sent = record(chart)
    view = ViewSeries()
    try:
        push_step(chart, [(float(t), float(t)) for t in range(0, 40, 2)])
        applied = check_view(chart, view, sent, 0)
        # Late, but newer than everything shown: sorted into its own batch, still an append.
        push_step(chart, [(50.0, 1.0), (45.0, 2.0)])
        applied = check_view(chart, view, sent, applied)
        assert sent[-1][0]["type"] == "append"
        # Older than samples the views have: the numbering shifts, so a window follows.
        push_step(chart, [(11.0, -1.0)])
        applied = check_view(chart, view, sent, applied)
        assert sent[-1][0]["type"] == "window"
        assert 11.0 in floats(chart.x)
        push_step(chart, [(60.0, 3.0)])
        check_view(chart, view, sent, applied)
        assert sent[-1][0]["type"] == "append"
    finally:
        chart.close()


def test_tail_keeps_the_newest_sample_and_non_finite_values_travel_as_null() -> None:
    chart = LiveChart(max_points=4, window_ms=1000)
    sent = record(chart)
    view = ViewSeries()
    try:
        # All eleven in one flush: stride ceil(11 / 3) = 4 keeps stream numbers 0, 4, 8; the
        # newest (number 10, t=9) is the tail. The 4.5 arrives late but within the same batch.
        push_step(chart, [(float(t), float(t)) for t in range(10)] + [(4.5, 4.5)])
        assert chart.points == 11 and chart.stride == 4
        assert floats(chart.x) == [0.0, 4.0, 7.0, 9.0] == floats(chart.y)
        assert sent[-1][0]["tail"] == [9.0, 9.0]
        applied = check_view(chart, view, sent, 0)
        push_step(chart, [(10.0, float("nan"))])
        assert sent[-1][0]["tail"] == [10.0, None]  # NaN is not JSON: null, drawn as a gap
        assert floats(chart.x) == [0.0, 4.0, 7.0, 10.0] and math.isnan(floats(chart.y)[-1])
        for content, buffers, _stride in sent[applied:]:
            assert view.apply(content, buffers) == "append"
        # The browser draws the null as NaN (a gap), after the three kept points.
        assert view.xs == [0.0, 4.0, 7.0] and view.tail is not None
        assert view.tail[0] == 10.0 and math.isnan(view.tail[1])
        push_step(chart, [(2000.0, 5.0)])  # moves the 1 s window past every earlier sample
        assert chart.points == 1 and floats(chart.x) == [2000.0]
    finally:
        chart.close()


def test_a_view_asking_for_the_window_gets_one_and_recovers_from_a_gap() -> None:
    chart = LiveChart(max_points=20, window_ms=1000)
    sent = record(chart)
    view = ViewSeries()
    try:
        push_step(chart, [(float(t), float(t)) for t in range(10)])
        applied = check_view(chart, view, sent, 0)
        push_step(chart, [(10.0, 10.0)])
        push_step(chart, [(11.0, 11.0)])
        lost = sent[applied]  # Jupyter dropped this one
        assert view.apply(*sent[applied + 1][:2]) == "gap"
        assert view.apply(*lost[:2]) == "ignored"  # too late: the view waits for a window
        applied = len(sent)
        chart._handle_custom_msg({"action": "window"}, [])  # what the view sends on a gap
        wait_until(lambda: len(sent) > applied, what="the window answering the request")
        content, _buffers, _stride = sent[applied]
        assert content["type"] == "window" and content["seq"] == sent[applied - 1][0]["seq"] + 1
        assert content["stats"]["delivered"] == 12 and content["pressure"] == "none"
        check_view(chart, view, sent, applied)
        assert view.xs[-1] == 11.0
    finally:
        chart.close()


def test_window_request_before_any_data_gets_an_empty_window() -> None:
    chart = LiveChart()
    sent = record(chart)
    try:
        chart._handle_custom_msg({"action": "window"}, [])
        wait_until(lambda: len(sent) == 1, what="an empty window")
        content, buffers, _stride = sent[0]
        assert content["type"] == "window" and content["tail"] is None and buffers == [b"", b""]
        assert chart.x == b"" == chart.y and chart.flushes == 1
    finally:
        chart.close()


def test_stats_ride_along_at_most_four_times_a_second() -> None:
    from rtwidgets.widgets.live_chart import STATS_INTERVAL

    chart = LiveChart(max_points=50, window_ms=60_000)
    sent = record(chart)
    try:
        for step in range(40):  # 40 flushes back to back: far more than 4 per second
            push_step(chart, [(float(step), float(step))])
        assert len(sent) >= 40
        with_stats = [content for content, _buffers, _stride in sent if "stats" in content]
        windows = sum(1 for content, _b, _s in sent if content["type"] == "window")
        # Loop-clock times of the sends (CoalescedSync records one per flush).
        span = chart.flush_times[-1] - chart.flush_times[-len(sent)]
        assert len(with_stats) <= windows + span / STATS_INTERVAL + 1
        assert "stats" in sent[0][0]  # the first message (a window) always carries them
        assert all("pressure" in content for content, _b, _s in sent)  # pressure in every message
        assert chart.stats["delivered"] == 40  # the Python trait is always current
    finally:
        chart.close()
