"""TokenBucket unit tests (pure: the clock is a number passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.gateway.ratelimit import TokenBucket


def test_starts_full_then_refills_at_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=100.0)
    assert [bucket.try_acquire(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after(100.0) == pytest.approx(0.5)
    assert not bucket.try_acquire(100.25)
    assert bucket.try_acquire(100.5)
    assert bucket.available(1000.0) == 3.0  # never above burst


def test_clock_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=10.0, burst=1, now=50.0)
    assert bucket.try_acquire(50.0)
    assert not bucket.try_acquire(49.0)
    assert bucket.available(49.5) == 0.0


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, now=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0, now=0)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.5, 100),
    burst=st.integers(1, 20),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, burst: int, steps: list[float]) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now, granted = 0.0, 0
    for dt in steps:
        now += dt
        while bucket.try_acquire(now):
            granted += 1
    assert granted <= burst + rate * now + 1e-6
    # And a full refill is granted after a long enough pause.
    assert bucket.available(now + burst / rate) == pytest.approx(burst)
