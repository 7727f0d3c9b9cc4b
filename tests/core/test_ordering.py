"""MessageOrderer: none / FIFO per sender / total order, gaps, bounds, accounting (pure, deterministic)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.ordering import MessageOrderer, OrderedMessage, OrderingConfig

Payload = tuple[str, int]  # (sender, sequence) - payloads name themselves so outputs are checkable


def msg(sender: str, seq: int, gseq: int | None = None) -> OrderedMessage[Payload]:
    return OrderedMessage(
        id=f"{sender}-{seq}",
        sender_id=sender,
        sequence_number=seq,
        global_sequence=gseq,
        timestamp=0.0,
        data=(sender, seq if gseq is None else gseq),
    )


def fifo(**kwargs: object) -> MessageOrderer[Payload]:
    return MessageOrderer(OrderingConfig(type="fifo", **kwargs))  # type: ignore[arg-type]


def total(**kwargs: object) -> MessageOrderer[Payload]:
    return MessageOrderer(OrderingConfig(type="total", **kwargs))  # type: ignore[arg-type]


def conserved(orderer: MessageOrderer[Payload]) -> bool:
    s = orderer.stats()
    return s.received == s.delivered + s.buffered + s.duplicates + s.late + s.discarded


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"type": "causal"}, ValueError, "type"),
        ({"max_buffer_size": 0}, ValueError, "max_buffer_size"),
        ({"max_buffer_size": 1.5}, TypeError, "max_buffer_size"),
        ({"max_wait_time": -1}, ValueError, "max_wait_time"),
        ({"max_wait_time": float("inf")}, ValueError, "max_wait_time"),
        ({"initial_sequence": "1"}, TypeError, "initial_sequence"),
        ({"initial_global_sequence": 1.0}, TypeError, "initial_global_sequence"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        OrderingConfig(**kwargs)


@pytest.mark.parametrize(
    ("seq", "gseq", "match"),
    [(True, None, "sequence_number"), ("1", None, "sequence_number"), (1, 2.0, "global")],
)
def test_message_rejects_non_integer_sequences(seq: object, gseq: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        OrderedMessage(
            id="x", sender_id="a", sequence_number=seq, global_sequence=gseq, timestamp=0.0, data=None
        )  # type: ignore[arg-type]


def test_receive_rejects_non_messages_and_total_without_global_sequence() -> None:
    with pytest.raises(TypeError, match="OrderedMessage"):
        fifo().on_message({"seq": 1}, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="global_sequence"):
        total().on_message(msg("a", 1), 0.0)


def test_time_going_backwards_is_an_error() -> None:
    orderer = fifo()
    orderer.on_message(msg("a", 1), 5.0)
    with pytest.raises(ValueError, match="backwards"):
        orderer.tick(4.0)


def test_now_is_required_and_there_is_no_clock_argument() -> None:
    # A core reads no clock: a missing ``now`` is a TypeError, not a silent clock read.
    orderer = fifo()
    with pytest.raises(TypeError):
        orderer.on_message(msg("a", 1))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        orderer.tick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        MessageOrderer(clock=lambda: 0.0)  # type: ignore[call-arg]
    assert orderer.stats().received == 0


# ---------------------------------------------------------------- 'none'


def test_none_passes_everything_through_in_arrival_order() -> None:
    orderer: MessageOrderer[Payload] = MessageOrderer(OrderingConfig(type="none"))
    out = [orderer.on_message(m, 0.0) for m in (msg("a", 2), msg("a", 1), msg("a", 1))]
    assert out == [[("a", 2)], [("a", 1)], [("a", 1)]]
    assert orderer.next_deadline() is None
    assert orderer.stats().delivered == 3


# ---------------------------------------------------------------- 'fifo'


def test_fifo_reorders_per_sender_independently() -> None:
    orderer = fifo(initial_sequence=1)
    assert orderer.on_message(msg("a", 2), 0.0) == []
    assert orderer.on_message(msg("b", 1), 0.0) == [("b", 1)]
    assert orderer.on_message(msg("a", 3), 0.0) == []
    assert orderer.stats().buffered == 2
    assert orderer.on_message(msg("a", 1), 0.0) == [("a", 1), ("a", 2), ("a", 3)]
    assert orderer.stats().buffered == 0
    assert conserved(orderer)


def test_fifo_first_message_starts_a_new_sender_by_default() -> None:
    orderer = fifo()
    assert orderer.on_message(msg("a", 41), 0.0) == [("a", 41)]
    assert orderer.on_message(msg("a", 42), 0.0) == [("a", 42)]
    assert orderer.on_message(msg("a", 40), 0.0) == []  # below the start point: late, not delivered
    stats = orderer.stats()
    assert (stats.late, stats.duplicates) == (1, 0)


@pytest.mark.parametrize(
    ("sequence", "duplicates", "delivered"),
    [
        ([1, 1], 1, [1]),  # duplicate of a delivered message
        ([1, 3, 3], 1, [1]),  # duplicate of a buffered message
        ([1, 2, 1, 2, 3], 2, [1, 2, 3]),
    ],
)
def test_fifo_duplicates_are_dropped_and_counted(
    sequence: list[int], duplicates: int, delivered: list[int]
) -> None:
    orderer = fifo(initial_sequence=1)
    out = [p for s in sequence for p in orderer.on_message(msg("a", s), 0.0)]
    assert out == [("a", s) for s in delivered]
    assert orderer.stats().duplicates == duplicates
    assert conserved(orderer)


def test_fifo_gap_times_out_then_late_arrival_is_counted() -> None:
    orderer = fifo(initial_sequence=1, max_wait_time=1.0)
    assert orderer.on_message(msg("a", 3), 0.0) == []
    assert orderer.next_deadline() == 1.0
    assert orderer.tick(0.99) == []
    assert orderer.tick(1.0) == [("a", 3)]
    assert orderer.next_deadline() is None
    assert orderer.on_message(msg("a", 1), 1.1) == []  # gap already skipped
    assert orderer.on_message(msg("a", 1), 1.2) == []  # second copy: a duplicate
    stats = orderer.stats()
    assert (stats.gaps_skipped, stats.late, stats.duplicates) == (2, 1, 1)
    assert conserved(orderer)


def test_fifo_timeout_releases_only_up_to_the_expired_message() -> None:
    orderer = fifo(initial_sequence=1, max_wait_time=1.0)
    orderer.on_message(msg("a", 3), 0.0)
    orderer.on_message(msg("a", 6), 0.5)
    assert orderer.tick(1.0) == [("a", 3)]
    assert orderer.next_deadline() == 1.5
    assert orderer.on_message(msg("a", 4), 1.1) == [("a", 4)]
    assert orderer.on_message(msg("a", 5), 1.2) == [("a", 5), ("a", 6)]
    assert orderer.stats().gaps_skipped == 2


def test_receive_flushes_expired_gaps_first() -> None:
    orderer = fifo(initial_sequence=1, max_wait_time=1.0)
    orderer.on_message(msg("a", 3), 0.0)
    assert orderer.on_message(msg("a", 5), 2.0) == [("a", 3)]  # 3's wait expired; 5 now waits for 4
    assert orderer.next_deadline() == 3.0
    assert orderer.tick(3.0) == [("a", 5)]


def test_fifo_full_buffer_forces_delivery_and_advances() -> None:
    """Regression: the design force-delivered without advancing, so 2 could follow 3."""
    orderer = fifo(initial_sequence=1, max_buffer_size=2)
    assert orderer.on_message(msg("a", 3), 0.0) == []
    assert orderer.on_message(msg("a", 4), 0.0) == []
    assert orderer.on_message(msg("a", 5), 0.0) == [("a", 3), ("a", 4), ("a", 5)]
    assert orderer.on_message(msg("a", 2), 0.0) == []
    stats = orderer.stats()
    assert (stats.forced, stats.gaps_skipped, stats.late, stats.buffered) == (1, 2, 1, 0)
    assert conserved(orderer)


def test_fifo_buffer_bound_is_per_sender() -> None:
    orderer = fifo(initial_sequence=1, max_buffer_size=2)
    for sender in "abc":
        orderer.on_message(msg(sender, 2), 0.0)
        orderer.on_message(msg(sender, 3), 0.0)
    stats = orderer.stats()
    assert (stats.buffered, stats.forced) == (6, 0)


# ---------------------------------------------------------------- 'total'


def test_total_orders_by_global_sequence_across_senders() -> None:
    orderer = total(initial_global_sequence=1)
    assert orderer.on_message(msg("a", 1, gseq=2), 0.0) == []
    assert orderer.on_message(msg("b", 1, gseq=3), 0.0) == []
    assert orderer.on_message(msg("b", 2, gseq=1), 0.0) == [("b", 1), ("a", 2), ("b", 3)]


def test_total_joining_late_does_not_wait_for_earlier_offsets() -> None:
    orderer = total(max_wait_time=60.0)
    assert orderer.on_message(msg("a", 1, gseq=5000), 0.0) == [("a", 5000)]
    assert orderer.on_message(msg("a", 2, gseq=5001), 0.0) == [("a", 5001)]
    assert orderer.on_message(msg("a", 0, gseq=4999), 0.0) == []
    assert orderer.stats().late == 1
    assert orderer.next_deadline() is None


def test_total_with_known_start_waits_for_it() -> None:
    orderer = total(initial_global_sequence=10, max_wait_time=2.0)
    assert orderer.on_message(msg("a", 1, gseq=11), 0.0) == []
    assert orderer.on_message(msg("a", 1, gseq=9), 0.5) == []  # below the start: late
    assert orderer.on_message(msg("a", 1, gseq=10), 1.0) == [("a", 10), ("a", 11)]
    stats = orderer.stats()
    assert (stats.late, stats.delivered) == (1, 2)


def test_total_full_buffer_forces_oldest_and_skips_gap() -> None:
    orderer = total(initial_global_sequence=1, max_buffer_size=3)
    for g in (3, 5, 6):
        assert orderer.on_message(msg("a", g, gseq=g), 0.0) == []
    assert orderer.on_message(msg("a", 8, gseq=8), 0.0) == [("a", 3)]
    stats = orderer.stats()
    assert (stats.forced, stats.gaps_skipped, stats.buffered) == (1, 2, 3)
    assert orderer.on_message(msg("a", 4, gseq=4), 0.0) == [("a", 4), ("a", 5), ("a", 6)]
    assert conserved(orderer)


def test_reset_returns_buffered_in_order_and_restarts() -> None:
    orderer = total(initial_global_sequence=1)
    orderer.on_message(msg("a", 1, gseq=4), 0.0)
    orderer.on_message(msg("a", 1, gseq=3), 0.0)
    assert orderer.reset() == [("a", 3), ("a", 4)]
    stats = orderer.stats()
    assert (stats.discarded, stats.buffered) == (2, 0)
    assert conserved(orderer)
    assert orderer.on_message(msg("a", 1, gseq=1), 1.0) == [("a", 1)]  # restarts at the config's start


def test_index_structures_do_not_grow_past_the_buffer() -> None:
    """Every second message arrives early and is drained at once: nothing may accumulate."""
    orderer = total(initial_global_sequence=1, max_wait_time=1000.0)
    for base in range(1, 2001, 2):
        orderer.on_message(msg("a", 0, gseq=base + 1), 0.0)
        orderer.on_message(msg("a", 0, gseq=base), 0.0)
    assert orderer.stats().delivered == 2000
    assert len(orderer._total.heap) == 0
    assert len(orderer._total.arrivals) == 0


# ---------------------------------------------------------------- properties


@st.composite
def shuffled_streams(draw: st.DrawFn) -> list[tuple[str, int]]:
    lengths = draw(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 12), min_size=1))
    items = [(sender, seq) for sender, n in lengths.items() for seq in range(1, n + 1)]
    duplicates = draw(st.lists(st.sampled_from(items), max_size=10)) if items else []
    return draw(st.permutations(items + duplicates))


@settings(max_examples=150, deadline=None)
@given(arrivals=shuffled_streams())
def test_property_fifo_any_interleaving_comes_out_per_sender_in_order_exactly_once(
    arrivals: list[tuple[str, int]],
) -> None:
    orderer = fifo(initial_sequence=1, max_buffer_size=1000, max_wait_time=10.0)
    out = [p for sender, seq in arrivals for p in orderer.on_message(msg(sender, seq), 0.0)]
    for sender in {s for s, _ in arrivals}:
        expected = sorted({seq for s, seq in arrivals if s == sender})
        assert [seq for s, seq in out if s == sender] == expected
    stats = orderer.stats()
    assert (stats.buffered, stats.late, stats.gaps_skipped) == (0, 0, 0)
    assert stats.duplicates == len(arrivals) - len(set(arrivals))
    assert conserved(orderer)


@settings(max_examples=150, deadline=None)
@given(arrivals=st.integers(0, 40).flatmap(lambda n: st.permutations(list(range(1, n + 1)) * 2)))
def test_property_total_any_permutation_comes_out_in_global_order(arrivals: list[int]) -> None:
    orderer = total(initial_global_sequence=1, max_buffer_size=1000, max_wait_time=10.0)
    out = [g for a in arrivals for _, g in orderer.on_message(msg("s", 0, gseq=a), 0.0)]
    assert out == sorted(set(arrivals))
    assert orderer.stats().duplicates == len(arrivals) // 2
    assert conserved(orderer)


@settings(max_examples=150, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.integers(1, 30), st.floats(0, 0.6), st.booleans()), max_size=80),
    max_buffer=st.integers(1, 6),
    start=st.sampled_from([None, 1]),
)
def test_property_total_under_timeouts_and_overflow_stays_ordered_and_accounted(
    arrivals: list[tuple[int, float, bool]], max_buffer: int, start: int | None
) -> None:
    orderer = total(initial_global_sequence=start, max_buffer_size=max_buffer, max_wait_time=1.0)
    now, out = 0.0, []
    for g, dt, tick_first in arrivals:
        now += dt
        if tick_first:
            out += [x for _, x in orderer.tick(now)]
        out += [x for _, x in orderer.on_message(msg("s", 0, gseq=g), now)]
        assert orderer.stats().buffered <= max_buffer
        assert conserved(orderer)
        deadline = orderer.next_deadline()
        assert (deadline is None) == (orderer.stats().buffered == 0)
    assert out == sorted(set(out))  # strictly increasing: total order never violated, no duplicates
    leftovers = [x for _, x in orderer.reset()]
    assert set(out).isdisjoint(leftovers)
    assert set(out) | set(leftovers) <= {g for g, _, _ in arrivals}


@settings(max_examples=100, deadline=None)
@given(
    arrivals=st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 15), st.floats(0, 0.6)), max_size=60),
    max_buffer=st.integers(1, 5),
)
def test_property_fifo_under_timeouts_and_overflow_keeps_per_sender_order(
    arrivals: list[tuple[str, int, float]], max_buffer: int
) -> None:
    orderer = fifo(max_buffer_size=max_buffer, max_wait_time=1.0)
    now, out = 0.0, []
    for sender, seq, dt in arrivals:
        now += dt
        out += orderer.on_message(msg(sender, seq), now)
        assert conserved(orderer)
    out += orderer.tick(now + 10.0)
    assert orderer.stats().buffered == 0
    for sender in "ab":
        seqs = [seq for s, seq in out if s == sender]
        assert seqs == sorted(set(seqs))


def test_message_to_order_reads_a_gateway_frame() -> None:
    from rtwidgets.core.ordering import message_to_order

    frame = {"type": "message", "eventId": "7", "clientId": "c1", "seq": 3, "offset": 7, "data": 1}
    fifo = message_to_order(frame, "fifo")
    assert fifo is not None
    assert (fifo.sender_id, fifo.sequence_number, fifo.global_sequence) == ("c1", 3, None)
    total = message_to_order(frame, "total")
    assert total is not None and (total.sequence_number, total.global_sequence) == (7, 7)
    assert total.data is frame
    assert message_to_order({**frame, "offset": None}, "total") is None  # ephemeral: as it comes
    assert message_to_order({k: v for k, v in frame.items() if k != "seq"}, "fifo") is None
    assert message_to_order({**frame, "seq": True}, "fifo") is None  # a bool is not a seq
