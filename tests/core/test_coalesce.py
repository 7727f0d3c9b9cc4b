"""Coalescer: latest-wins merging and a per-widget flush-rate bound; RateBudget: one total
rate shared by every widget of a process (pure, deterministic)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.coalesce import Coalescer, RateBudget


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


def test_explicit_now_and_backwards_time() -> None:
    # Was the injected-clock test: the same flushes, with ``now`` passed explicitly.
    c = Coalescer(max_rate=2)
    c.update("k", 1, 3.0)
    assert c.poll(3.0) == {"k": 1}
    c.update("k", 2, 3.0)
    assert c.poll(3.5) == {"k": 2}
    with pytest.raises(ValueError, match="backwards"):
        c.update("k", 3, 1.0)


def test_now_is_required_and_there_is_no_clock_argument() -> None:
    # A core reads no clock: a missing ``now`` is a TypeError, not a silent clock read.
    c = Coalescer()
    with pytest.raises(TypeError):
        c.update("k", 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        c.update_many({"k": 1})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        c.poll()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        c.drain()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Coalescer(clock=lambda: 0.0)  # type: ignore[call-arg]
    assert c.stats().updates == 0


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


# ---------------------------------------------------------------------------- set_max_rate


def test_set_max_rate_moves_the_pending_deadline() -> None:
    c = Coalescer(max_rate=10)
    c.update("x", 1, 0.0)
    assert c.poll(0.0) == {"x": 1}
    c.update("x", 2, 0.01)
    assert c.next_deadline() == pytest.approx(0.1)
    c.set_max_rate(4)  # lowered: the pending flush waits for the new interval
    assert c.max_rate == 4.0 and c.next_deadline() == pytest.approx(0.25)
    assert c.poll(0.1) is None
    c.set_max_rate(100)  # raised: due at once, the pending value was kept
    assert c.next_deadline() == pytest.approx(0.01)
    assert c.poll(0.1) == {"x": 2}
    with pytest.raises(ValueError, match="max_rate"):
        c.set_max_rate(0)
    with pytest.raises(TypeError, match="max_rate"):
        c.set_max_rate("fast")  # type: ignore[arg-type]
    assert c.max_rate == 100.0  # a refused change leaves the rate as it was


# ---------------------------------------------------------------------------- RateBudget


@pytest.mark.parametrize(
    ("total", "error"), [(0, ValueError), (-1, ValueError), (math.inf, ValueError), ("800", TypeError)]
)
def test_budget_rejects_bad_total(total: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="total_rate"):
        RateBudget(total)  # type: ignore[arg-type]
    budget = RateBudget(100)
    with pytest.raises(error, match="total_rate"):
        budget.set_total_rate(total)  # type: ignore[arg-type]
    assert budget.total_rate == 100.0


def test_budget_shares_equally_once_caps_do_not_fit() -> None:
    budget = RateBudget(800)
    members = [budget.join(60) for _ in range(13)]
    assert [budget.share(m) for m in members] == [60.0] * 13  # 780 <= 800: everyone at its cap
    members += [budget.join(60) for _ in range(7)]
    assert len(budget) == 20
    assert all(budget.share(m) == pytest.approx(40.0) for m in members)  # 800 / 20
    for m in members[:10]:
        budget.leave(m)
    assert all(budget.share(m) == 60.0 for m in members[10:])  # 10 x 60 fits again


def test_budget_gives_unused_share_to_uncapped_members() -> None:
    budget = RateBudget(100)
    slow = budget.join(10)
    fast = [budget.join(60), budget.join(60)]
    assert budget.share(slow) == 10.0
    assert [budget.share(m) for m in fast] == [pytest.approx(45.0)] * 2  # (100 - 10) / 2
    budget.set_total_rate(1000)
    assert budget.share(slow) == 10.0 and [budget.share(m) for m in fast] == [60.0, 60.0]


def test_budget_version_moves_on_every_change_and_unknown_members_raise() -> None:
    budget = RateBudget(100)
    versions = [budget.version]
    a = budget.join(60)
    versions.append(budget.version)
    b = budget.join(60)
    versions.append(budget.version)
    budget.leave(a)
    versions.append(budget.version)
    budget.set_total_rate(50)
    versions.append(budget.version)
    assert versions == sorted(set(versions))  # strictly increasing
    assert budget.share(b) == 50.0
    with pytest.raises(KeyError, match="already left"):
        budget.leave(a)
    with pytest.raises(KeyError, match="already left"):
        budget.share(a)
    with pytest.raises(ValueError, match="max_rate"):
        budget.join(-1)
    assert len(budget) == 1


@settings(max_examples=100, deadline=None)
@given(
    total=st.floats(1.0, 2000.0),
    caps=st.lists(st.floats(0.5, 240.0), min_size=1, max_size=40),
    leaving=st.sets(st.integers(0, 39)),
)
def test_property_shares_fit_the_total_and_are_max_min_fair(
    total: float, caps: list[float], leaving: set[int]
) -> None:
    budget = RateBudget(total)
    members = [budget.join(cap) for cap in caps]
    live = dict(zip(members, caps, strict=True))
    for i in sorted(leaving):
        if i < len(members) and len(live) > 1:
            budget.leave(members[i])
            del live[members[i]]
    shares = {m: budget.share(m) for m in live}
    assert sum(shares.values()) <= total * (1 + 1e-9)
    for m, share in shares.items():
        assert 0 < share <= live[m]
    # Max-min fair: a member below its cap gets at least as much as anyone else, and then the
    # whole total is in use (no rate is left unused while someone wants more).
    starved = [m for m in live if shares[m] < live[m]]
    for m in starved:
        assert shares[m] >= max(shares.values()) * (1 - 1e-9)
    if starved:
        assert sum(shares.values()) == pytest.approx(total)
    else:
        assert sum(shares.values()) == pytest.approx(sum(live.values()))


def test_idle_members_leave_their_rate_to_busy_ones() -> None:
    budget = RateBudget(800, idle_rate=4)
    members = [budget.join(60) for _ in range(20)]
    assert {budget.share(m) for m in members} == {40.0}  # 20 busy widgets: 800 / 20
    version = budget.version
    for m in members[2:]:
        budget.set_idle(m, True)
    assert budget.version > version and budget.is_idle(members[5]) and not budget.is_idle(members[0])
    assert [budget.share(m) for m in members[:2]] == [60.0, 60.0]  # capped by their own 60
    assert {budget.share(m) for m in members[2:]} == {4.0}  # idle: a trickle each
    budget.set_idle(members[5], False)  # it has something to send again
    assert budget.share(members[5]) == 60.0
    budget.set_idle(members[5], False)  # no change, no error
    budget.leave(members[6])  # an idle member may leave
    assert len(budget) == 19 and not budget.is_idle(members[6])
    with pytest.raises(KeyError):
        budget.set_idle(members[6], True)


def test_many_idle_members_still_fit_the_total() -> None:
    budget = RateBudget(100, idle_rate=4)
    members = [budget.join(60) for _ in range(50)]
    for m in members:
        budget.set_idle(m, True)
    assert sum(budget.share(m) for m in members) <= 100 + 1e-9  # 50 x 4 would be 200
    assert {budget.share(m) for m in members} == {2.0}


@settings(max_examples=150, deadline=None)
@given(
    total=st.floats(1.0, 2000.0),
    idle_rate=st.floats(0.1, 50.0),
    caps=st.lists(st.floats(0.5, 240.0), min_size=1, max_size=40),
    idle=st.sets(st.integers(0, 39)),
)
def test_property_idle_members_never_push_the_total_over(
    total: float, idle_rate: float, caps: list[float], idle: set[int]
) -> None:
    budget = RateBudget(total, idle_rate=idle_rate)
    members = [budget.join(cap) for cap in caps]
    for i in idle:
        if i < len(members):
            budget.set_idle(members[i], True)
    shares = {m: budget.share(m) for m in members}
    assert sum(shares.values()) <= total * (1 + 1e-9)
    for i, m in enumerate(members):
        cap = min(caps[i], idle_rate) if i in idle else caps[i]
        assert 0 < shares[m] <= cap * (1 + 1e-12)
    # Max-min fair over the effective caps: whoever is below its cap gets the most of anyone.
    starved = [
        m for i, m in enumerate(members) if shares[m] < (min(caps[i], idle_rate) if i in idle else caps[i])
    ]
    for m in starved:
        assert shares[m] >= max(shares.values()) * (1 - 1e-9)


def test_budget_set_cap_moves_shares() -> None:
    budget = RateBudget(total_rate=100.0)
    a, b = budget.join(60.0), budget.join(60.0)
    assert budget.share(a) == budget.share(b) == 50.0
    version = budget.version
    budget.set_cap(a, 10.0)  # a's views cannot draw faster: b gets the rest
    assert budget.share(a) == 10.0 and budget.share(b) == 60.0 and budget.version > version
    with pytest.raises(KeyError):
        budget.set_cap(99, 1.0)
    with pytest.raises(ValueError):
        budget.set_cap(a, 0.0)
