"""BackpressureBuffer: pacing, pressure levels, shedding strategies, accounting (pure, deterministic)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rtwidgets.core.backpressure import BackpressureBuffer, BackpressureConfig

Item = tuple[str, int]  # (key, push index)


def key_of(item: Item) -> str:
    return item[0]


class ScriptedRandom(random.Random):
    """A Random whose random() returns a fixed script, to drive 'sample' down both branches."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_buffer_size": 0}, ValueError, "max_buffer_size"),
        ({"max_buffer_size": 2.5}, TypeError, "max_buffer_size"),
        ({"max_buffer_size": True}, TypeError, "max_buffer_size"),
        ({"low_water_mark": 0.9, "high_water_mark": 0.5}, ValueError, "water marks"),
        ({"high_water_mark": 1.5}, ValueError, "water marks"),
        ({"low_water_mark": -0.1}, ValueError, "water marks"),
        ({"sampling_strategy": "oldest"}, ValueError, "sampling_strategy"),
        ({"batch_interval": -1}, ValueError, "batch_interval"),
        ({"batch_interval": float("nan")}, ValueError, "batch_interval"),
        ({"batch_size_none": 0}, ValueError, "batch_size_none"),
        ({"batch_size_high": 1.5}, ValueError, "batch_size_high"),
        ({"batch_drop_fraction": 0}, ValueError, "batch_drop_fraction"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        BackpressureConfig(**kwargs)


def test_defaults_follow_the_article() -> None:
    config = BackpressureConfig()
    assert (config.max_buffer_size, config.high_water_mark, config.low_water_mark) == (1000, 0.8, 0.5)
    assert (config.batch_size_none, config.batch_size_moderate, config.batch_size_high) == (20, 50, 100)
    assert config.sampling_strategy == "latest"


# ---------------------------------------------------------------- pacing


def test_first_poll_is_immediate_then_paced_by_batch_interval() -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(max_buffer_size=100, batch_interval=0.1, batch_size_none=2)
    )
    assert buf.poll(0.0) is None  # nothing buffered
    for i in range(5):
        buf.push(i, 1.0)
    assert buf.next_deadline() == 1.0
    assert buf.poll(1.0) == [0, 1]
    assert buf.next_deadline() == pytest.approx(1.1)
    assert buf.poll(1.05) is None
    assert buf.poll(1.15) == [2, 3]
    assert buf.poll(1.25) == [4]
    assert buf.next_deadline() is None
    assert buf.poll(5.0) is None


def test_next_deadline_after_quiet_spell_is_the_push_time() -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer(BackpressureConfig(batch_interval=0.5))
    buf.push(1, 0.0)
    assert buf.poll(0.0) == [1]
    buf.push(2, 10.0)
    assert buf.next_deadline() == 10.0  # interval long past: due as soon as pushed
    assert buf.poll(10.0) == [2]


def test_handler_receives_each_batch() -> None:
    batches: list[list[int]] = []
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(batch_interval=0.0, batch_size_none=3), handler=batches.append
    )
    for i in range(4):
        buf.push(i, 0.0)
    assert buf.poll(0.0) == [0, 1, 2]
    assert buf.poll(0.0) == [3]
    assert batches == [[0, 1, 2], [3]]


def test_now_paces_batches_from_any_time_base() -> None:
    # Was the injected-clock test: the same pacing, with ``now`` passed explicitly.
    buf: BackpressureBuffer[int] = BackpressureBuffer(BackpressureConfig(batch_interval=1.0))
    buf.push(1, 5.0)
    assert buf.poll(5.0) == [1]
    buf.push(2, 5.0)
    assert buf.poll(5.5) is None
    assert buf.poll(6.0) == [2]


def test_now_is_required_and_there_is_no_clock_argument() -> None:
    # A core reads no clock: a missing ``now`` is a TypeError, not a silent clock read.
    buf: BackpressureBuffer[int] = BackpressureBuffer()
    with pytest.raises(TypeError):
        buf.push(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        buf.poll()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        BackpressureBuffer(clock=lambda: 0.0)  # type: ignore[call-arg]
    assert buf.stats().pushed == 0


def test_time_going_backwards_is_an_error() -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer()
    buf.push(1, 10.0)
    with pytest.raises(ValueError, match="backwards"):
        buf.push(2, 9.0)


# ---------------------------------------------------------------- pressure


@pytest.mark.parametrize(
    ("count", "level", "batch"),
    [(0, "none", None), (49, "none", 20), (50, "moderate", 50), (79, "moderate", 50), (80, "high", 80)],
)
def test_pressure_level_and_batch_size(count: int, level: str, batch: int | None) -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(max_buffer_size=100, batch_size_high=90)
    )
    for i in range(count):
        buf.push(i, 0.0)
    assert buf.pressure == level
    assert buf.stats().fill_ratio == count / 100
    result = buf.poll(0.0)
    assert (None if result is None else len(result)) == batch


def test_pressure_callback_fires_on_each_change_only() -> None:
    levels: list[str] = []
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(
            max_buffer_size=10, batch_interval=0.0, batch_size_high=5, on_pressure=levels.append
        )
    )
    for i in range(10):
        buf.push(i, 0.0)
    assert levels == ["moderate", "high"]
    assert buf.poll(0.0) == [0, 1, 2, 3, 4]  # 5 left -> moderate
    assert buf.poll(0.0) is not None  # 5 more (moderate batch 50) -> empty
    assert levels == ["moderate", "high", "moderate", "none"]


def test_clear_returns_items_counts_them_and_resets_pressure() -> None:
    levels: list[str] = []
    discarded: list[tuple[object, str]] = []
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(
            max_buffer_size=4, on_pressure=levels.append, on_discard=lambda i, r: discarded.append((i, r))
        )
    )
    for i in range(4):
        buf.push(i, 0.0)
    assert buf.clear() == [0, 1, 2, 3]
    assert discarded == [(0, "cleared"), (1, "cleared"), (2, "cleared"), (3, "cleared")]
    assert levels[-1] == "none"
    stats = buf.stats()
    assert (stats.buffer_size, stats.dropped, stats.pushed) == (0, 4, 4)
    assert buf.next_deadline() is None


# ---------------------------------------------------------------- strategies at capacity


def test_latest_without_key_drops_oldest() -> None:
    discarded: list[tuple[object, str]] = []
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(max_buffer_size=3, on_discard=lambda i, r: discarded.append((i, r)))
    )
    for i in range(5):
        buf.push(i, 0.0)
    assert buf.poll(0.0) == [2, 3, 4]
    assert discarded == [(0, "dropped"), (1, "dropped")]
    assert buf.stats().dropped == 2


def test_latest_with_key_replaces_newest_slot_of_that_key() -> None:
    """Regression for the design's bug (docs/design.md#departures).

    k:3 must not land in k:1's slot and be overtaken by k:2."""
    buf: BackpressureBuffer[Item] = BackpressureBuffer(
        BackpressureConfig(
            max_buffer_size=3, batch_interval=0.0, batch_size_none=1, batch_size_moderate=1, batch_size_high=1
        ),
        key=key_of,
    )
    for item in [("a", 1), ("a", 2), ("b", 1), ("a", 3)]:
        buf.push(item, 0.0)
    delivered = [buf.poll(0.0) for _ in range(3)]
    assert delivered == [[("a", 1)], [("a", 3)], [("b", 1)]]
    stats = buf.stats()
    assert (stats.merged, stats.dropped, stats.delivered, stats.pushed) == (1, 0, 3, 4)


def test_latest_with_new_key_at_capacity_drops_oldest_and_forgets_its_key() -> None:
    buf: BackpressureBuffer[Item] = BackpressureBuffer(BackpressureConfig(max_buffer_size=2), key=key_of)
    buf.push(("a", 1), 0.0)
    buf.push(("b", 1), 0.0)
    buf.push(("c", 1), 0.0)  # drops a:1
    buf.push(("a", 2), 0.0)  # 'a' no longer buffered: drops b:1 rather than merging
    assert buf.poll(0.0) == [("c", 1), ("a", 2)]
    assert (buf.stats().dropped, buf.stats().merged) == (2, 0)


def test_key_extractor_runs_once_per_push() -> None:
    """The design re-ran the extractor over the whole buffer per push at capacity (O(n))."""
    calls = Counter[str]()

    def counting_key(item: Item) -> str:
        calls["n"] += 1
        return item[0]

    buf: BackpressureBuffer[Item] = BackpressureBuffer(
        BackpressureConfig(max_buffer_size=50), key=counting_key
    )
    for i in range(500):
        buf.push((f"k{i % 60}", i), 0.0)
    assert calls["n"] == 500


@pytest.mark.parametrize(
    ("script", "kept"),
    [([0.1], [1, 2, 9]), ([0.9], [0, 1, 2]), ([0.49, 0.5], [1, 2, 9])],
)
def test_sample_keeps_newcomer_or_oldest_by_injected_rng(script: list[float], kept: list[int]) -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(max_buffer_size=3, sampling_strategy="sample"), rng=ScriptedRandom(script)
    )
    for i in range(3):
        buf.push(i, 0.0)
    for newcomer in (9, 8)[: len(script)]:
        buf.push(newcomer, 0.0)
    assert buf.poll(0.0) == kept
    assert buf.stats().dropped == len(script)


def test_sample_sheds_newcomer_or_oldest_about_half_each_with_a_seeded_rng() -> None:
    discarded: list[int] = []
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(
            max_buffer_size=10, sampling_strategy="sample", on_discard=lambda i, r: discarded.append(i)
        ),
        rng=random.Random(42),
    )
    newcomers_dropped = 0
    for i in range(2010):
        before = len(discarded)
        buf.push(i, 0.0)
        newcomers_dropped += discarded[before:] == [i]
    assert len(discarded) == 2000  # exactly one item shed per push at capacity
    assert 900 < newcomers_dropped < 1100  # the injected RNG splits them ~50/50
    assert buf.stats().dropped == 2000
    assert len(buf) == 10


def test_batch_strategy_sheds_oldest_tenth() -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(max_buffer_size=20, sampling_strategy="batch", batch_size_high=100)
    )
    for i in range(21):
        buf.push(i, 0.0)
    assert buf.poll(0.0) == [*range(2, 21)]  # ceil(20 * 0.1) = 2 oldest dropped
    assert buf.stats().dropped == 2


def test_batch_strategy_drop_fraction_is_configurable() -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer(
        BackpressureConfig(max_buffer_size=10, sampling_strategy="batch", batch_drop_fraction=0.5)
    )
    for i in range(11):
        buf.push(i, 0.0)
    assert buf.poll(0.0) == [5, 6, 7, 8, 9, 10]


# ---------------------------------------------------------------- de-duplication and accounting


def test_batch_dedupe_keeps_latest_value_at_first_position() -> None:
    discarded: list[tuple[object, str]] = []
    buf: BackpressureBuffer[Item] = BackpressureBuffer(
        BackpressureConfig(on_discard=lambda i, r: discarded.append((i, r))), key=key_of
    )
    for item in [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)]:
        buf.push(item, 0.0)
    assert buf.poll(0.0) == [("a", 2), ("b", 2), ("c", 1)]
    assert discarded == [(("a", 1), "merged"), (("b", 1), "merged")]
    stats = buf.stats()
    assert (stats.pushed, stats.delivered, stats.merged, stats.dropped, stats.shed) == (5, 3, 2, 0, 2)


def test_without_key_nothing_is_deduplicated() -> None:
    buf: BackpressureBuffer[int] = BackpressureBuffer()
    for value in [1, 1, 1]:
        buf.push(value, 0.0)
    assert buf.poll(0.0) == [1, 1, 1]


# ---------------------------------------------------------------- properties

# Pushes weighted 3:1:1 over polls and polls-at-deadline, few keys and small buffers, so that
# capacity, per-key merging and multi-slot keys are hit often.
ops = st.lists(
    st.tuples(
        st.sampled_from(["push", "push", "push", "poll", "due"]), st.sampled_from("abc"), st.floats(0, 0.05)
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=ops,
    strategy=st.sampled_from(["latest", "sample", "batch"]),
    use_key=st.booleans(),
    max_size=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_property_bounded_and_every_item_accounted_for(
    ops: list[tuple[str, str, float]], strategy: str, use_key: bool, max_size: int, seed: int
) -> None:
    delivered: list[Item] = []
    discarded: list[tuple[Item, str]] = []
    buf: BackpressureBuffer[Item] = BackpressureBuffer(
        BackpressureConfig(
            max_buffer_size=max_size,
            sampling_strategy=strategy,  # type: ignore[arg-type]
            batch_interval=0.01,
            batch_size_none=2,
            batch_size_moderate=3,
            batch_size_high=4,
            on_discard=lambda i, r: discarded.append((i, r)),  # type: ignore[arg-type]
        ),
        handler=delivered.extend,
        key=key_of if use_key else None,
        rng=random.Random(seed),
    )
    now, pushed = 0.0, 0
    for op, key, dt in ops:
        now += dt
        if op == "push":
            buf.push((key, pushed), now)
            pushed += 1
        elif op == "due" and (deadline := buf.next_deadline()) is not None:
            now = max(now, deadline)
            assert buf.poll(now) is not None
        else:
            buf.poll(now)
        stats = buf.stats()
        assert len(buf) <= max_size
        assert stats.pushed == stats.delivered + stats.dropped + stats.merged + stats.buffer_size
        deadline = buf.next_deadline()
        assert (deadline is None) == (len(buf) == 0)
        if deadline is not None and deadline > now:
            assert buf.poll(now) is None  # not due yet
    buffered = buf.clear()
    outcome = [item[1] for item in delivered] + [item[1] for item, _ in discarded]
    assert sorted(outcome) == list(range(pushed))  # each item exactly once (buffered ones were cleared)
    assert buf.stats().dropped == sum(1 for _, r in discarded if r in ("dropped", "cleared"))
    assert len(buffered) == sum(1 for _, r in discarded if r == "cleared")


@settings(max_examples=150, deadline=None)
@given(ops=ops, max_size=st.integers(1, 6), batch=st.integers(1, 4))
# The design's bug: a:2 landed in a:0's slot, then dedupe let a:1 win over it.
@example(
    ops=[("push", "a", 0.0), ("push", "a", 0.0), ("push", "a", 0.0), ("poll", "", 0.0)], max_size=2, batch=4
)
def test_property_latest_never_lets_an_older_value_win(
    ops: list[tuple[str, str, float]], max_size: int, batch: int
) -> None:
    delivered: list[Item] = []
    dropped: list[Item] = []
    buf: BackpressureBuffer[Item] = BackpressureBuffer(
        BackpressureConfig(
            max_buffer_size=max_size,
            batch_interval=0.01,
            batch_size_none=batch,
            batch_size_moderate=batch,
            batch_size_high=batch,
            on_discard=lambda i, r: dropped.append(i) if r == "dropped" else None,  # type: ignore[arg-type]
        ),
        handler=delivered.extend,
        key=key_of,
    )
    now, pushed = 0.0, 0
    newest: dict[str, int] = {}
    for op, key, dt in ops:
        now += dt
        if op == "push":
            buf.push((key, pushed), now)
            newest[key] = pushed
            pushed += 1
        else:
            buf.poll(now)
        # Per key, deliveries are in push order: an older value never follows a newer one.
        last_seen: dict[str, int] = {}
        for k, index in delivered:
            assert index > last_seen.get(k, -1)
            last_seen[k] = index
    buffered = buf.clear()
    for k, index in newest.items():
        in_buffer = (k, index) in buffered
        delivered_last = last_seen.get(k) == index
        shed_at_capacity = (k, index) in dropped
        assert in_buffer or delivered_last or shed_at_capacity
        # Anything still buffered for the key is newer than what was delivered for it.
        assert all(i > last_seen.get(k, -1) for kk, i in buffered if kk == k)
