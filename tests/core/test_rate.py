"""AdaptiveRateController: frame-rate window, rate adjustment, token bucket (pure, deterministic)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.rate import AdaptiveRateController, RateControlConfig


def frames(ctrl: AdaptiveRateController, start: float, fps: float, seconds: float) -> float:
    """Record frames at ``fps`` from ``start`` for ``seconds``; return the last frame time."""
    count = round(seconds * fps)
    t = start
    for i in range(1, count + 1):
        t = start + i / fps
        ctrl.record_frame(t)
    return t


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_frame_rate": 0}, "target_frame_rate"),
        ({"measurement_window": -1}, "measurement_window"),
        ({"min_rate": float("inf")}, "min_rate"),
        ({"max_rate": float("nan")}, "max_rate"),
        ({"min_rate": 50, "max_rate": 10}, "min_rate"),
        ({"adjustment_interval": 0}, "adjustment_interval"),
        ({"min_samples": 0}, "min_samples"),
        ({"decrease_factor": 1.0}, "decrease_factor"),
        ({"increase_factor": 1.0}, "increase_factor"),
        ({"burst": 0.5}, "burst"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RateControlConfig(**kwargs)


def test_starts_at_max_rate_not_under_pressure() -> None:
    ctrl = AdaptiveRateController(RateControlConfig(min_rate=5, max_rate=200))
    assert ctrl.current_rate == 200
    assert ctrl.is_under_pressure is False
    assert ctrl.measured_fps is None
    assert ctrl.next_deadline() is None


def test_time_going_backwards_is_an_error() -> None:
    ctrl = AdaptiveRateController()
    ctrl.record_frame(1.0)
    with pytest.raises(ValueError, match="backwards"):
        ctrl.should_process(0.5)


# ---------------------------------------------------------------- frame-rate measurement and adjustment


def test_measured_fps_covers_only_the_window() -> None:
    """Regression: the design compared frame durations with a timestamp and never trimmed correctly."""
    ctrl = AdaptiveRateController(RateControlConfig(measurement_window=1.0))
    t = frames(ctrl, 0.0, 10, 3.0)  # slow frames for 3 s
    t = frames(ctrl, t, 50, 1.5)  # then fast frames for longer than the window
    assert ctrl.measured_fps == pytest.approx(50)


def test_slow_frames_lower_the_rate_every_adjustment_interval_down_to_min() -> None:
    ctrl = AdaptiveRateController(RateControlConfig(target_frame_rate=60, min_rate=10, max_rate=100))
    ctrl.record_frame(0.0)  # starts the adjustment clock; too few samples to adjust yet
    t = frames(ctrl, 0.0, 30, 1.0)
    assert ctrl.is_under_pressure
    # Adjusted at t = 0.5 and t = 1.0 (every 0.5 s once >= 10 samples are in the window).
    assert ctrl.current_rate == pytest.approx(100 * 0.8**2)
    frames(ctrl, t, 30, 10.0)
    assert ctrl.current_rate == 10
    assert ctrl.is_under_pressure


def test_recovery_raises_rate_gradually_and_ends_throttling_at_max() -> None:
    ctrl = AdaptiveRateController(RateControlConfig(target_frame_rate=60, min_rate=10, max_rate=100))
    t = frames(ctrl, 0.0, 30, 8.0)  # 100 * 0.8^11 < 10: clamped at min_rate
    assert ctrl.current_rate == 10
    t = frames(ctrl, t, 60, 1.6)  # the window drops the slow frames, then the rate climbs
    assert 10 < ctrl.current_rate < 100
    assert ctrl.is_under_pressure
    frames(ctrl, t, 60, 20.0)
    assert ctrl.current_rate == 100
    assert ctrl.is_under_pressure is False


@pytest.mark.parametrize(
    ("fps", "expected_rate", "throttling"),
    [
        (60, 100, False),  # on target
        (53, 80, True),  # below 0.9 x target: lowered once at the first full window
        (55, 100, False),  # inside the 0.9..0.95 band: unchanged
    ],
)
def test_adjustment_thresholds(fps: float, expected_rate: float, throttling: bool) -> None:
    ctrl = AdaptiveRateController(
        RateControlConfig(target_frame_rate=60, min_rate=1, max_rate=100, adjustment_interval=10.0)
    )
    ctrl.record_frame(0.0)  # first frame: no duration yet, marks the adjustment clock
    frames(ctrl, 0.0, fps, 10.0)
    assert ctrl.current_rate == pytest.approx(expected_rate)
    assert ctrl.is_under_pressure is throttling


def test_no_adjustment_with_fewer_than_min_samples_in_window() -> None:
    ctrl = AdaptiveRateController(RateControlConfig(target_frame_rate=60, max_rate=100, min_samples=10))
    frames(ctrl, 0.0, 5, 5.0)  # a 1 s window never holds 10 frames at 5 fps
    assert ctrl.current_rate == 100
    assert ctrl.measured_fps == pytest.approx(5)


def test_identical_frame_times_count_as_fast() -> None:
    ctrl = AdaptiveRateController()
    ctrl.record_frame(1.0)
    ctrl.record_frame(1.0)
    assert ctrl.measured_fps == math.inf


# ---------------------------------------------------------------- token bucket


def test_token_bucket_paces_at_current_rate() -> None:
    ctrl = AdaptiveRateController(RateControlConfig(min_rate=1, max_rate=10))
    assert ctrl.should_process(0.0) is True
    assert ctrl.should_process(0.0) is False
    assert ctrl.next_deadline() == pytest.approx(0.1)
    assert ctrl.should_process(0.05) is False
    assert ctrl.should_process(0.1) is True
    assert ctrl.should_process(0.35) is True  # idle time accrues at most `burst` (1) token
    assert ctrl.should_process(0.35) is False


def test_burst_allows_back_to_back_messages_after_idle() -> None:
    ctrl = AdaptiveRateController(RateControlConfig(min_rate=1, max_rate=10, burst=3))
    assert [ctrl.should_process(0.0) for _ in range(4)] == [True, True, True, False]
    assert [ctrl.should_process(10.0) for _ in range(4)] == [True, True, True, False]
    assert ctrl.should_process(10.1) is True


def test_lowered_rate_slows_the_bucket() -> None:
    ctrl = AdaptiveRateController(RateControlConfig(target_frame_rate=60, min_rate=1, max_rate=10))
    t = frames(ctrl, 0.0, 30, 0.6)  # one adjustment: 10 -> 8
    assert ctrl.current_rate == pytest.approx(8)
    assert ctrl.should_process(t) is True
    assert ctrl.should_process(t) is False
    assert ctrl.next_deadline() == pytest.approx(t + 1 / 8)


def test_bucket_starts_at_the_first_now() -> None:
    # Was the injected-clock test: the same token bucket, with ``now`` passed explicitly.
    ctrl = AdaptiveRateController(RateControlConfig(min_rate=1, max_rate=4))
    assert ctrl.should_process(100.0) is True
    assert ctrl.should_process(100.0) is False
    assert ctrl.should_process(100.25) is True


def test_now_is_required_and_there_is_no_clock_argument() -> None:
    # A core reads no clock: a missing ``now`` is a TypeError, not a silent clock read.
    ctrl = AdaptiveRateController()
    with pytest.raises(TypeError):
        ctrl.should_process()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ctrl.record_frame()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        AdaptiveRateController(clock=lambda: 0.0)  # type: ignore[call-arg]
    assert ctrl.next_deadline() is None  # nothing was taken


@settings(max_examples=100, deadline=None)
@given(
    rate=st.floats(1, 500),
    burst=st.floats(1, 10),
    gaps=st.lists(st.floats(0, 0.05), min_size=1, max_size=200),
)
def test_property_token_bucket_never_exceeds_rate_plus_burst(
    rate: float, burst: float, gaps: list[float]
) -> None:
    ctrl = AdaptiveRateController(RateControlConfig(min_rate=rate, max_rate=rate, burst=burst))
    t, allowed, start = 0.0, 0, 0.0
    for gap in gaps:
        t += gap
        allowed += ctrl.should_process(t)
        assert allowed <= burst + rate * (t - start) + 1e-9


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(1, 500), gaps=st.lists(st.floats(0, 1), min_size=1, max_size=100))
def test_property_calls_spaced_by_one_interval_always_pass(rate: float, gaps: list[float]) -> None:
    ctrl = AdaptiveRateController(RateControlConfig(min_rate=rate, max_rate=rate))
    t = 0.0
    for gap in gaps:
        assert ctrl.should_process(t) is True
        t += 1 / rate * 1.000001 + gap  # at least one token's worth of time


def test_record_frames_batches_lower_and_raise_the_rate() -> None:
    """A remote view reports its frames in batches (one per second): a slow or stalled view
    lowers the rate, a fast one raises it back to max_rate."""
    cfg = RateControlConfig(
        target_frame_rate=50, min_rate=2, max_rate=60, decrease_factor=0.5, increase_factor=2
    )
    c = AdaptiveRateController(cfg)
    c.record_frames(60, 1.0, now=1.0)  # a visible tab at 60 fps
    assert c.current_rate == 60 and not c.is_under_pressure
    c.record_frames(20, 1.0, now=2.0)  # 20 fps: cannot keep up
    assert c.current_rate == 30 and c.is_under_pressure and c.measured_fps == pytest.approx(20)
    c.record_frames(0, 3.0, now=5.0)  # a background tab: no frames at all
    assert c.current_rate == 15 and c.measured_fps == pytest.approx(1 / 3)
    for t in range(6, 12):
        c.record_frames(5, 1.0, now=float(t))  # few frames still count (min_samples padded)
    assert c.current_rate == 2  # floor
    for t in range(12, 20):
        c.record_frames(60, 1.0, now=float(t))
    assert c.current_rate == 60 and not c.is_under_pressure
    with pytest.raises(ValueError, match="count"):
        c.record_frames(-1, 1.0, now=21.0)
    with pytest.raises(ValueError, match="elapsed"):
        c.record_frames(1, 0.0, now=21.0)
