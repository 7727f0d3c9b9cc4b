"""RateMeter, the core rate meter (pure: the clock is a number passed in)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.rate_meter import RateMeter


def test_steady_stream_reads_as_its_rate() -> None:
    meter = RateMeter(1.0, now=0.0)
    for i in range(1, 501):  # 100 events per second for 5 s
        meter.add(1, i / 100)
    assert meter.rate(5.0) == pytest.approx(100.0, rel=0.02)
    assert meter.total == 500


def test_burst_after_start_is_averaged_over_the_window() -> None:
    meter = RateMeter(1.0, now=0.0)
    meter.add(5, 0.001)
    assert meter.rate(0.001) == pytest.approx(5.0)


def test_a_stopped_stream_decays_to_zero() -> None:
    meter = RateMeter(1.0, now=0.0)
    for i in range(1, 101):
        meter.add(1, i / 100)
    assert meter.rate(1.0) == pytest.approx(100.0)
    assert meter.rate(1.5) == pytest.approx(50.0)  # half the window still holds events
    assert meter.rate(3.0) == 0.0


def test_rare_readings_of_a_counter_average_over_the_time_since_the_last_old_one() -> None:
    meter = RateMeter(10.0, now=0.0, resolution=1.0)
    meter.observe_total(1000, 100.0)  # first reading after 100 s: 10/s on average
    assert meter.rate(100.0) == pytest.approx(10.0)
    meter.observe_total(1000, 120.0)  # nothing since: the baseline is now the reading at 100 s
    assert meter.rate(120.0) == 0.0


def test_resolution_bounds_the_marks_not_the_total() -> None:
    meter = RateMeter(10.0, now=0.0, resolution=1.0)
    for i in range(1, 1001):
        meter.add(1, i / 1000)  # 1000 events within one second
    assert meter.total == 1000
    assert len(meter._marks) <= 3
    assert meter.rate(1.0) == pytest.approx(100.0)  # 1000 events / the 10 s window


def test_bad_input() -> None:
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="window"):
            RateMeter(bad, now=0.0)
    with pytest.raises(ValueError, match="resolution"):
        RateMeter(1.0, now=0.0, resolution=-1)
    meter = RateMeter(1.0, now=5.0)
    with pytest.raises(ValueError, match="count"):
        meter.add(-1, 6.0)
    meter.observe_total(3, 6.0)
    with pytest.raises(ValueError, match="cannot go down"):
        meter.observe_total(2, 7.0)
    with pytest.raises(ValueError, match="backwards"):
        meter.rate(4.0)


@settings(max_examples=80, deadline=None)
@given(
    window=st.floats(0.1, 10),
    steps=st.lists(st.tuples(st.floats(0, 3), st.integers(0, 50)), min_size=1, max_size=60),
)
def test_rate_bounded_by_events_in_reach(window: float, steps: list[tuple[float, int]]) -> None:
    meter = RateMeter(window, now=0.0)
    now, events = 0.0, []
    for dt, count in steps:
        now += dt
        meter.add(count, now)
        events.append((now, count))
    rate = meter.rate(now)
    assert rate >= 0
    # Everything the estimate counts happened after its baseline, at most total events.
    assert rate * window <= sum(c for _, c in events) + 1e-6
    # Events strictly inside the last window are never missed.
    recent = sum(c for t, c in events if t > now - window)
    assert rate * max(window, now) + 1e-6 >= recent
