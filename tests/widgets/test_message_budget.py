"""The process-wide comm message budget shared by every widget's CoalescedSync, and
CoalescedSync.set_later (values built at flush time), on the real runtime loop."""

from __future__ import annotations

import gc
import struct
import time
from typing import Any

import pytest
import traitlets

from rtwidgets.models import _binding
from rtwidgets.models._binding import CoalescedSync, SharedRateBudget, message_budget
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets import LiveChart

from .conftest import wait_until
from .test_live_chart_stream import floats
from .test_live_chart_stream import record as record_chart_messages
from .test_widgets import max_in_window


class Target(traitlets.HasTraits):
    a = traitlets.Int(0)
    b = traitlets.Unicode("")


def on_loop(fn: Any) -> Any:
    """Run ``fn()`` on the runtime thread and return its result."""

    async def call() -> Any:
        return fn()

    return get_runtime().run(call(), 10)


def test_syncs_share_the_budget_and_adopt_new_shares() -> None:
    budget = SharedRateBudget(100)
    targets = [Target() for _ in range(4)]
    syncs = [CoalescedSync(t, max_rate=60, budget=budget) for t in targets]
    try:
        assert len(budget) == 4
        for i, s in enumerate(syncs):
            s.set(a=i + 1)
        wait_until(lambda: [t.a for t in targets] == [1, 2, 3, 4], what="first flushes")
        # Every sync re-read its share at its flush: 100 / 4 each (not its own 60).
        assert [s.max_rate for s in syncs] == [25.0] * 4
        for s in syncs[2:]:
            s.close()
        assert len(budget) == 2
        syncs[0].set(a=10)
        wait_until(lambda: targets[0].a == 10, what="flush after others left")
        assert syncs[0].max_rate == 50.0 == budget.share(syncs[0]._member)
        syncs[2].set(a=99)  # closed: ignored, and closing again is harmless
        syncs[2].close()
        assert targets[2].a == 3 and len(budget) == 2
    finally:
        for s in syncs:
            s.close()
    assert len(budget) == 0


def test_total_flushes_stay_within_the_budget() -> None:
    # Three syncs at 60/s each would flush 180 times a second; the budget allows 30 in total.
    # Checked on the loop clock the coalescers use (a rate bound, not a speed measurement).
    budget = SharedRateBudget(30)
    targets = [Target() for _ in range(3)]
    syncs = [CoalescedSync(t, max_rate=60, budget=budget) for t in targets]
    try:
        n = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            n += 1
            for s in syncs:
                s.set(a=n)
            time.sleep(0.001)
        wait_until(lambda: all(t.a == n for t in targets), what="last values flushed")
        times = sorted(t for s in syncs for t in s.flush_times)
        assert len(times) >= 6
        # Any 1 s window: at most total + one leading-edge flush per member.
        for i, start in enumerate(times):
            assert sum(1 for t in times[i:] if t < start + 1.0) <= 30 + 3
    finally:
        for s in syncs:
            s.close()


def test_unclosed_sync_returns_its_share_when_collected() -> None:
    budget = SharedRateBudget(100)
    sync = CoalescedSync(Target(), budget=budget)
    assert len(budget) == 1
    del sync
    gc.collect()
    assert len(budget) == 0


def test_bad_max_rate_does_not_join() -> None:
    budget = SharedRateBudget(100)
    with pytest.raises(ValueError, match="max_rate"):
        CoalescedSync(Target(), max_rate=0, budget=budget)
    assert len(budget) == 0


def test_set_later_builds_values_at_flush_time() -> None:
    target = Target()
    sync = CoalescedSync(target, max_rate=60, budget=SharedRateBudget(1000))
    calls: list[float] = []

    def compute(now: float) -> dict[str, Any]:
        calls.append(now)
        return {"a": 7, "b": f"built {len(calls)}"}

    def queue_burst() -> None:
        sync.set(b="first")  # flushed at once (leading edge); the rest waits 1/60 s
        # Queued together before the next flush: one flush, one call of the latest compute.
        sync.set(a=1)
        sync.set_later(lambda now: {"b": "superseded"})
        sync.set_later(compute)

    try:
        on_loop(queue_burst)
        wait_until(lambda: target.b == "built 1", what="computed flush")
        assert target.a == 7  # computed values win over set() ones of the same flush
        assert sync.flushes == 2 and len(calls) == 1 and calls[0] == sync.flush_times[-1]
    finally:
        sync.close()


def test_set_later_failure_is_logged_and_the_sync_keeps_working(caplog: pytest.LogCaptureFixture) -> None:
    target = Target()
    sync = CoalescedSync(target, budget=SharedRateBudget(1000))
    try:
        sync.set_later(lambda now: 1 / 0)
        wait_until(lambda: sync.flushes == 1, what="failed flush counted")
        assert "could not apply" in caplog.text
        sync.set(a=5)
        wait_until(lambda: target.a == 5, what="next flush")
    finally:
        sync.close()


def test_budget_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_binding.MESSAGE_BUDGET_ENV, "250")
    assert _binding._budget_from_env() == 250.0
    monkeypatch.setenv(_binding.MESSAGE_BUDGET_ENV, "")
    assert _binding._budget_from_env() == _binding.DEFAULT_MESSAGE_BUDGET
    for bad in ("lots", "0", "-5", "inf", "nan"):
        monkeypatch.setenv(_binding.MESSAGE_BUDGET_ENV, bad)
        with pytest.raises(ValueError, match="RTWIDGETS_MESSAGE_BUDGET"):
            _binding._budget_from_env()


def test_live_charts_share_the_process_budget() -> None:
    budget = message_budget()
    total = budget.total_rate
    before = len(budget)
    charts = [LiveChart(title=f"c{i}") for i in range(20)]
    try:
        # One member per chart: its data messages (window/append) are its CoalescedSync flushes.
        assert len(budget) == before + 20
        for i, chart in enumerate(charts):
            chart.push(float(i))
        wait_until(lambda: all(len(c.y) == 8 for c in charts), what="every chart flushed once")
        live = len(budget)
        for chart in charts:
            rate = chart._sync.max_rate
            assert rate == pytest.approx(min(60.0, total / live))
            assert struct.unpack("<d", chart.y)[0] == float(charts.index(chart))
        _binding.set_message_budget(total / 2)
        for chart in charts:
            chart.push(100.0)
        wait_until(lambda: all(len(c.y) == 16 for c in charts), what="second flush")
        assert all(c._sync.max_rate == pytest.approx(min(60.0, total / 2 / live)) for c in charts)
        with pytest.raises(ValueError, match="total_rate"):
            _binding.set_message_budget(0)
    finally:
        _binding.set_message_budget(total)
        for chart in charts:
            chart.close()
    assert len(budget) == before


def test_live_chart_window_decimation_keeps_the_newest_sample() -> None:
    chart = LiveChart(max_points=4, window_ms=1000)
    try:

        def push_all() -> None:
            for t in range(10):
                chart.push(float(t), t=float(t))
            chart.push(4.5, t=4.5)  # out of order: inserted in time order

        on_loop(push_all)  # one runtime-thread call: the samples meet the chart in one flush
        wait_until(
            lambda: chart.stats.get("delivered") == 11 and chart.stats["buffered"] == 0,
            what="all samples flushed",
        )
        window = [0.0, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0]
        # Stable decimation: stride ceil(11 / (4 - 1)) = 4 keeps stream numbers 0, 4, 8 (the
        # out-of-order 4.5 is number 5 once sorted in), and the newest sample follows as the tail.
        expected = [*window[::4], window[-1]]
        assert chart.points == 11 and chart.stride == 4
        assert list(struct.unpack("<4d", chart.x)) == expected == [0.0, 4.0, 7.0, 9.0]
        assert list(struct.unpack("<4d", chart.y)) == expected
        chart.push(2000.0, t=2000.0)  # moves the 1 s window past every earlier sample
        wait_until(lambda: chart.stats.get("delivered") == 12, what="window cut")
        assert chart.points == 1 and struct.unpack("<d", chart.x) == (2000.0,)
    finally:
        chart.close()


def test_live_chart_data_messages_follow_the_budget_share() -> None:
    budget = message_budget()
    total = budget.total_rate
    chart = LiveChart(window_ms=60_000)
    messages = record_chart_messages(chart)
    try:
        _binding.set_message_budget(10.0 * len(budget))  # this chart's share: 10 messages/s
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < 0.6:  # a 1 kHz-ish producer for 0.6 s
            chart.push(float(sent))
            sent += 1
            time.sleep(0.001)
        wait_until(lambda: chart.stats.get("delivered") == sent, what="every sample delivered")
        wait_until(lambda: floats(chart.y)[-1:] == [float(sent - 1)], what="the newest sample shown")
        assert chart._sync.max_rate == pytest.approx(10.0)
        # Every flush is one data message, paced at the chart's share (+1 at a window edge).
        assert 2 <= len(messages) == chart.flushes
        assert max_in_window(chart.flush_times, 1.0) <= 11
    finally:
        _binding.set_message_budget(total)
        chart.close()


def test_idle_syncs_leave_their_share_to_busy_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_binding, "IDLE_AFTER", 0.2)
    budget = SharedRateBudget(100)
    targets = [Target() for _ in range(4)]
    syncs = [CoalescedSync(t, max_rate=60, budget=budget) for t in targets]
    try:
        for i, s in enumerate(syncs):
            s.set(a=i + 1)
        wait_until(lambda: [t.a for t in targets] == [1, 2, 3, 4], what="first flushes")
        assert [s.max_rate for s in syncs] == [25.0] * 4  # 100 / 4, all busy
        # Two keep sending, two fall silent and become idle after IDLE_AFTER.
        wait_until(lambda: syncs[2].idle and syncs[3].idle, what="quiet syncs marked idle")
        value = 10

        def busy_value_shown() -> bool:
            nonlocal value
            value += 1
            syncs[0].set(a=value)
            syncs[1].set(a=value)
            return targets[0].a == value - 1 and syncs[0].max_rate == 46.0

        # The busy ones adopt the idle ones' rate: (100 - 2 x 4 idle) / 2 = 46 each.
        wait_until(busy_value_shown, what="busy syncs at the larger share")
        assert syncs[1].max_rate == 46.0 and budget.share(syncs[2]._member) == 4.0
        # An idle one that gets a value is busy again at once and flushes without delay.
        syncs[2].set(a=99)
        wait_until(lambda: targets[2].a == 99, what="the woken sync's flush")
        assert not syncs[2].idle and syncs[2].max_rate == pytest.approx(96 / 3)  # 3 busy, 1 idle
    finally:
        for s in syncs:
            s.close()
    assert len(budget) == 0
