"""Coalescer: latest-wins merging and a per-widget flush-rate bound (pure, deterministic)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.coalesce import Coalescer


@pytest.mark.parametrize(
    ("max_rate", "error"),
    [
        (0, ValueError),
        (-5, ValueError),
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        ("60", TypeError),
        (True, TypeError),
    ],
)
def test_rejects_bad_max_rate(max_rate: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_rate"):
        Coalescer(max_rate)  # type: ignore[arg-type]


def test_first_update_flushes_immediately_then_rate_limited() -> None:
    c = Coalescer(max_rate=10)  # min interval 0.1 s
    assert c.poll(0.0) is None
    assert c.next_deadline() is None
    c.update("x", 1, 0.0)
    assert c.next_deadline() == 0.0
    assert c.poll(0.0) == {"x": 1}
    c.update("x", 2, 0.01)
    c.update("y", "a", 0.02)
    c.update("x", 3, 0.03)
    assert c.next_deadline() == pytest.approx(0.1)
    assert c.poll(0.05) is None
    assert c.poll(0.1) == {"x": 3, "y": "a"}
    stats = c.stats()
    assert (stats.updates, stats.flushes, stats.merged, stats.flushed_values, stats.pending) == (
        4,
        2,
        1,
        3,
        0,
    )


def test_flushed_dict_keeps_first_update_order() -> None:
    c = Coalescer()
    for key, value in [("b", 1), ("a", 1), ("b", 2)]:
        c.update(key, value, 0.0)
    assert list(c.poll(0.0) or {}) == ["b", "a"]


def test_quiet_spell_makes_next_update_due_at_once() -> None:
    c = Coalescer(max_rate=1)
    c.update("x", 1, 0.0)
    assert c.poll(0.0) == {"x": 1}
    c.update("x", 2, 50.0)
    assert c.next_deadline() == 50.0
    assert c.poll(50.0) == {"x": 2}


def test_update_many_and_drain() -> None:
    c = Coalescer(max_rate=1)
    c.update_many({"a": 1, "b": 2}, 0.0)
    assert c.poll(0.0) == {"a": 1, "b": 2}
    c.update_many({"a": 3}, 0.1)
    assert c.poll(0.1) is None
    assert c.drain(0.1) == {"a": 3}  # teardown: flush regardless of rate
    assert c.drain(0.2) is None
    assert c.stats().flushes == 2


def test_injected_clock_and_backwards_time() -> None:
    now = [3.0]
    c = Coalescer(max_rate=2, clock=lambda: now[0])
    c.update("k", 1)
    assert c.poll() == {"k": 1}
    c.update("k", 2)
    now[0] = 3.5
    assert c.poll() == {"k": 2}
    with pytest.raises(ValueError, match="backwards"):
        c.update("k", 3, 1.0)


@settings(max_examples=150, deadline=None)
@given(
    max_rate=st.sampled_from([1.0, 7.0, 60.0, 240.0]),
    events=st.lists(
        st.tuples(st.floats(0, 0.05), st.sampled_from(["poll", "due", "a", "b", "c"]), st.integers()),
        max_size=200,
    ),
    window=st.floats(0.001, 2.0),
)
def test_property_rate_bound_and_last_value_wins(
    max_rate: float, events: list[tuple[float, str, int]], window: float
) -> None:
    c = Coalescer(max_rate=max_rate)
    now = 0.0
    flush_times: list[float] = []
    last_update: dict[str, int] = {}
    last_flushed: dict[str, int] = {}
    for dt, op, value in events:
        now += dt
        if op == "due":
            deadline = c.next_deadline()
            if deadline is None:
                continue
            now = max(now, deadline)
            result = c.poll(now)
            assert result is not None  # polling at next_deadline() always succeeds
        elif op == "poll":
            result = c.poll(now)
        else:
            c.update(op, value, now)
            last_update[op] = value
            continue
        if result is not None:
            flush_times.append(now)
            last_flushed.update(result)
    final = c.drain(now)
    if final is not None:
        last_flushed.update(final)
    assert last_flushed == last_update
    stats = c.stats()
    assert stats.updates == stats.merged + stats.flushed_values + stats.pending
    # Any window of `window` seconds holds at most ceil(window * max_rate) + 1 polled flushes.
    bound = math.ceil(window * max_rate) + 1
    for i, start in enumerate(flush_times):
        in_window = sum(1 for t in flush_times[i:] if t <= start + window)
        assert in_window <= bound
