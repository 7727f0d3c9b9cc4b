"""TokenBucket, the core bucket (pure: the clock is a number passed in)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.token_bucket import TokenBucket
from rtwidgets.gateway.ratelimit import TokenBucket as GatewayBucket


def test_the_gateway_uses_the_core_bucket() -> None:
    assert GatewayBucket is TokenBucket


@pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan, True, "1"])
def test_rate_and_burst_must_be_finite_positive_numbers(bad: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(bad, 1, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, bad, 0.0)  # type: ignore[arg-type]
    bucket = TokenBucket(1, 1, 0.0)
    with pytest.raises(ValueError, match="rate"):
        bucket.set_rate(bad, 1.0)  # type: ignore[arg-type]


def test_next_deadline_and_cost() -> None:
    bucket = TokenBucket(rate=4.0, burst=2, now=10.0)
    assert bucket.next_deadline() == 10.0  # full: now
    assert bucket.try_acquire(10.0, cost=2)
    assert bucket.next_deadline() == pytest.approx(10.25)
    assert bucket.next_deadline(cost=2) == pytest.approx(10.5)
    assert not bucket.try_acquire(10.2)
    # Exactly one token's interval later (floating point may land a hair below 1.0).
    assert bucket.try_acquire(10.25)
    assert bucket.retry_after(10.25) == pytest.approx(0.25)


def test_set_rate_accrues_at_the_old_rate_until_now() -> None:
    bucket = TokenBucket(rate=1.0, burst=10, now=0.0)
    for _ in range(10):
        assert bucket.try_acquire(0.0)
    bucket.set_rate(10.0, now=2.0)  # 2 tokens earned at 1/s
    assert bucket.available(2.0) == pytest.approx(2.0)
    assert bucket.available(2.5) == pytest.approx(7.0)  # then 10/s


def test_backwards_reading_is_served_without_refill() -> None:
    bucket = TokenBucket(rate=1.0, burst=2, now=5.0)
    assert bucket.try_acquire(5.0)
    assert bucket.try_acquire(4.0)  # the second token is still there
    assert not bucket.try_acquire(4.5)
    assert bucket.last == 5.0


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.5, 100),
    burst=st.integers(1, 20),
    steps=st.lists(st.tuples(st.floats(0, 2), st.floats(0.5, 50)), min_size=1, max_size=40),
)
def test_rate_changes_never_grant_more_than_earned(
    rate: float, burst: int, steps: list[tuple[float, float]]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now, granted, earned = 0.0, 0, float(burst)
    for dt, new_rate in steps:
        earned += dt * bucket.rate
        now += dt
        bucket.set_rate(new_rate, now)
        while bucket.try_acquire(now):
            granted += 1
    assert granted <= earned + 1e-6
