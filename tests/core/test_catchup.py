"""CatchUp: live frames held while a read runs, then one ordered output (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.catchup import (
    CatchUp,
    CatchUpEvent,
    Deliver,
    Marker,
    Position,
    ReadDone,
    stream_position,
)


def msg(offset: int, epoch: str = "e1") -> tuple[dict[str, Any], bytes]:
    frame: dict[str, Any] = {"type": "message", "channel": "c", "offset": offset, "epoch": epoch}
    return frame, f"m{epoch}:{offset}".encode()


def eph(n: int) -> tuple[dict[str, Any], bytes]:
    frame: dict[str, Any] = {"type": "message", "channel": "c", "ephemeral": True, "data": n}
    return frame, f"eph{n}".encode()


def join(n: int) -> tuple[dict[str, Any], bytes]:
    frame: dict[str, Any] = {"type": "presence_join", "channel": "c", "member": {"clientId": str(n)}}
    return frame, f"join{n}".encode()


def describe(events: list[CatchUpEvent]) -> list[Any]:
    """Events as short comparable values: the bytes of a Deliver (with 'R:' if read), the label
    of a Marker, ('done', covered) for ReadDone."""
    out: list[Any] = []
    for ev in events:
        if isinstance(ev, Deliver):
            out.append(("R:" if ev.read else "") + ev.data.decode())
        elif isinstance(ev, Marker):
            out.append(("mark", ev.label))
        else:
            out.append(("done", ev.covered))
    return out


# ---------------------------------------------------------------------- positions


def test_stream_position_is_only_for_stored_messages() -> None:
    assert stream_position(msg(3)[0]) == Position("e1", 3)
    assert stream_position(eph(1)[0]) is None
    assert stream_position(join(1)[0]) is None
    assert stream_position({"type": "message", "offset": True, "epoch": "e1"}) is None  # a bool is no offset
    assert stream_position({"type": "message", "offset": 1, "epoch": None}) is None
    assert stream_position({"type": "message", "offset": "1", "epoch": "e1"}) is None
    assert stream_position({"type": "history", "offset": 1, "epoch": "e1"}) is None


def test_position_covers_only_its_own_epoch_at_or_below() -> None:
    p = Position("e1", 5)
    assert p.covers(Position("e1", 5)) and p.covers(Position("e1", 0))
    assert not p.covers(Position("e1", 6))
    assert not p.covers(Position("e2", 1))
    # An unknown epoch (a channel never written to) covers nothing.
    assert not Position(None, 9).covers(Position("e1", 1))


# ---------------------------------------------------------------------- not holding


def test_live_frames_pass_through_when_not_holding() -> None:
    cu = CatchUp()
    cu.on_live(*msg(1))
    cu.on_live(*eph(1))
    cu.on_live(*msg(2))
    assert describe(cu.events()) == ["me1:1", "eph1", "me1:2"]
    assert cu.events() == []  # drained
    assert cu.position == Position("e1", 2) and not cu.holding


def test_live_duplicates_and_older_offsets_are_dropped_and_counted() -> None:
    cu = CatchUp(position=Position("e1", 3))
    for offset in (2, 3, 4, 4, 1, 5):
        cu.on_live(*msg(offset))
    assert describe(cu.events()) == ["me1:4", "me1:5"]
    assert cu.duplicates == 4


def test_frames_without_position_are_never_dropped() -> None:
    cu = CatchUp(position=Position("e1", 3))
    cu.on_live(*eph(1))
    cu.on_live(*eph(1))  # the core does not dedupe what it cannot place
    cu.on_live(*join(1))
    assert describe(cu.events()) == ["eph1", "eph1", "join1"]
    assert cu.duplicates == 0 and cu.position == Position("e1", 3)


def test_another_epoch_is_delivered_and_moves_the_position() -> None:
    cu = CatchUp(position=Position("e1", 9))
    cu.on_live(*msg(1, "e2"))
    cu.on_live(*msg(1, "e2"))
    cu.on_live(*msg(2, "e2"))
    assert describe(cu.events()) == ["me2:1", "me2:2"]
    assert cu.position == Position("e2", 2)


def test_a_position_with_an_unknown_epoch_drops_nothing() -> None:
    # The Redis broker attaches a channel nobody wrote to yet: epoch None, offset 0.
    cu = CatchUp(position=Position(None, 0))
    cu.on_live(*msg(1))
    assert describe(cu.events()) == ["me1:1"]


def test_a_mark_while_not_holding_is_output_at_once() -> None:
    cu = CatchUp()
    cu.on_live(*msg(1))
    cu.mark("here")
    cu.on_live(*msg(2))
    assert describe(cu.events()) == ["me1:1", ("mark", "here"), "me1:2"]


# ---------------------------------------------------------------------- holding and reading


def test_held_frames_wait_for_the_read_then_follow_it() -> None:
    cu = CatchUp(position=Position("e1", 5))
    ticket = cu.hold()
    assert cu.holding
    cu.on_live(*msg(8))
    cu.on_live(*eph(1))
    cu.on_live(*msg(9))
    assert cu.events() == []
    assert cu.held_frames == 3 and cu.held_bytes == len(b"me1:8") + len(b"eph1") + len(b"me1:9")
    assert cu.on_read(ticket, [msg(6), msg(7), msg(8)]) is True
    assert describe(cu.events()) == ["R:me1:6", "R:me1:7", "R:me1:8", ("done", None), "eph1", "me1:9"]
    assert not cu.holding and cu.held_frames == 0 and cu.held_bytes == 0
    assert cu.duplicates == 1  # the live 8, already out from the read
    assert cu.position == Position("e1", 9)


def test_read_frames_overlapping_the_position_are_dropped() -> None:
    cu = CatchUp(position=Position("e1", 5))
    ticket = cu.hold()
    cu.on_read(ticket, [msg(4), msg(5), msg(6)])
    assert describe(cu.events()) == ["R:me1:6", ("done", None)]
    assert cu.duplicates == 2


def test_covered_drops_held_frames_the_read_accounts_for() -> None:
    # The gateway's new subscription: the history frame carries up to offset 4.
    cu = CatchUp()
    ticket = cu.hold()
    for offset in (3, 4, 5):
        cu.on_live(*msg(offset))
    cu.on_read(ticket, covered=Position("e1", 4))
    assert describe(cu.events()) == [("done", Position("e1", 4)), "me1:5"]
    assert cu.duplicates == 2


def test_without_covered_every_held_frame_is_delivered() -> None:
    # The gateway's live subscription re-subscribing: its receiver never saw the snapshot.
    cu = CatchUp()
    ticket = cu.hold()
    for offset in (3, 4, 5):
        cu.on_live(*msg(offset))
    cu.on_read(ticket, covered=None)
    assert describe(cu.events()) == [("done", None), "me1:3", "me1:4", "me1:5"]


def test_covered_of_another_epoch_replaces_the_position() -> None:
    cu = CatchUp(position=Position("e1", 50))
    ticket = cu.hold()
    cu.on_live(*msg(2, "e2"))
    cu.on_live(*msg(3, "e2"))
    cu.on_read(ticket, covered=Position("e2", 2))
    assert describe(cu.events()) == [("done", Position("e2", 2)), "me2:3"]


def test_covered_below_the_position_does_not_move_it_back() -> None:
    cu = CatchUp(position=Position("e1", 7))
    ticket = cu.hold()
    cu.on_live(*msg(7))
    cu.on_read(ticket, covered=Position("e1", 3))
    assert describe(cu.events()) == [("done", Position("e1", 3))]
    assert cu.position == Position("e1", 7)


def test_held_frame_of_the_old_epoch_after_a_covered_new_epoch_is_delivered() -> None:
    # Same as the gateway before this core: only the snapshot's own epoch is covered.
    cu = CatchUp()
    ticket = cu.hold()
    cu.on_live(*msg(9, "e1"))
    cu.on_read(ticket, covered=Position("e2", 1))
    assert describe(cu.events()) == [("done", Position("e2", 1)), "me1:9"]


def test_covered_still_applies_after_a_frame_of_another_epoch() -> None:
    # Redis restarted empty during a subscribe: an old-epoch frame was in flight, then new-epoch
    # frames the snapshot (of the new epoch) already holds.
    cu = CatchUp()
    ticket = cu.hold()
    cu.on_live(*msg(50, "e1"))
    cu.on_live(*msg(1, "e2"))
    cu.on_live(*msg(2, "e2"))
    cu.on_live(*msg(3, "e2"))
    cu.on_read(ticket, covered=Position("e2", 2))
    assert describe(cu.events()) == [("done", Position("e2", 2)), "me1:50", "me2:3"]
    # The floor lasts until the next read replaces it.
    cu.on_live(*msg(51, "e1"))
    cu.on_live(*msg(2, "e2"))
    assert describe(cu.events()) == ["me1:51"]
    ticket = cu.hold()
    cu.on_read(ticket)
    cu.on_live(*msg(2, "e2"))  # the position is e1:51 and no floor is left
    assert describe(cu.events()) == [("done", None), "me2:2"]


def test_read_of_a_new_epoch_is_delivered_whole() -> None:
    # Redis restarted empty: the gap fill reads every retained event of the new epoch.
    cu = CatchUp(position=Position("e1", 40))
    ticket = cu.hold()
    cu.on_live(*msg(2, "e2"))
    cu.on_read(ticket, [msg(1, "e2"), msg(2, "e2")])
    assert describe(cu.events()) == ["R:me2:1", "R:me2:2", ("done", None)]
    assert cu.position == Position("e2", 2)


def test_after_the_read_live_frames_pass_through_again() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    cu.on_read(ticket, covered=Position("e1", 2))
    cu.events()
    cu.on_live(*msg(2))
    cu.on_live(*msg(3))
    assert describe(cu.events()) == ["me1:3"]


# ---------------------------------------------------------------------- markers


def test_marker_lands_between_the_frames_held_before_and_after_it() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    cu.on_live(*join(1))
    cu.on_live(*msg(5))
    cu.mark("members")
    cu.on_live(*join(2))
    cu.on_live(*msg(6))
    cu.on_read(ticket, covered=Position("e1", 4))
    assert describe(cu.events()) == [
        ("done", Position("e1", 4)),
        "join1",
        "me1:5",
        ("mark", "members"),
        "join2",
        "me1:6",
    ]


def test_marker_before_any_held_frame_comes_right_after_the_read() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    cu.mark("members")
    cu.on_live(*msg(1))
    cu.on_read(ticket, [msg(1)])
    assert describe(cu.events()) == ["R:me1:1", ("done", None), ("mark", "members")]


def test_marker_after_every_held_frame_comes_last() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    cu.on_live(*msg(1))
    cu.mark("members")
    cu.on_read(ticket)
    assert describe(cu.events()) == [("done", None), "me1:1", ("mark", "members")]


def test_marker_keeps_its_place_when_its_neighbours_are_covered() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    cu.on_live(*msg(1))
    cu.mark("members")
    cu.on_live(*msg(2))
    cu.on_live(*msg(3))
    cu.on_read(ticket, covered=Position("e1", 2))
    assert describe(cu.events()) == [("done", Position("e1", 2)), ("mark", "members"), "me1:3"]


def test_several_markers_keep_their_order() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    cu.mark(1)
    cu.on_live(*eph(1))
    cu.mark(2)
    cu.mark(3)
    cu.on_read(ticket)
    assert describe(cu.events()) == [("done", None), ("mark", 1), "eph1", ("mark", 2), ("mark", 3)]


# ---------------------------------------------------------------------- tickets, abort, discard


def test_a_stale_ticket_changes_nothing() -> None:
    cu = CatchUp()
    first = cu.hold()
    cu.on_live(*msg(3))
    second = cu.hold()  # a reconnect started another read: the first one is superseded
    assert second != first and cu.holding
    assert cu.on_read(first, [msg(1), msg(2)]) is False
    assert cu.abort(first) is False
    assert cu.events() == [] and cu.holding and cu.held_frames == 1
    assert cu.on_read(second, [msg(1), msg(2), msg(3)]) is True
    assert describe(cu.events()) == ["R:me1:1", "R:me1:2", "R:me1:3", ("done", None)]


def test_reading_when_not_holding_is_refused() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    assert cu.on_read(ticket) is True
    cu.events()
    assert cu.on_read(ticket, [msg(1)]) is False  # the same read cannot be applied twice
    assert cu.abort(ticket) is False
    assert cu.events() == []


def test_abort_releases_the_held_frames_as_they_are() -> None:
    cu = CatchUp(position=Position("e1", 2))
    ticket = cu.hold()
    cu.on_live(*msg(2))  # still deduplicated: it was out before
    cu.on_live(*msg(3))
    cu.mark("m")
    cu.on_live(*eph(1))
    assert cu.abort(ticket) is True
    assert describe(cu.events()) == ["me1:3", ("mark", "m"), "eph1"]
    assert not cu.holding and cu.duplicates == 1


def test_discard_drops_the_held_frames_and_says_how_many() -> None:
    cu = CatchUp()
    ticket = cu.hold()
    cu.on_live(*msg(1))
    cu.mark("m")
    cu.on_live(*eph(1))
    assert cu.discard() == 2
    assert cu.events() == [] and not cu.holding and cu.held_bytes == 0
    assert cu.on_read(ticket) is False  # that read is gone with what it held
    assert cu.position is None  # nothing was delivered
    cu.on_live(*msg(1))
    assert describe(cu.events()) == ["me1:1"]
    assert cu.discard() == 0  # not holding: nothing to drop


# ---------------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error() -> None:
    cu = CatchUp()
    with pytest.raises(TypeError, match="frame must be a dict"):
        cu.on_live([1], b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="encoded bytes"):
        cu.on_live({"type": "message"}, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="position must be a Position"):
        CatchUp(position=("e1", 3))  # type: ignore[arg-type]
    ticket = cu.hold()
    with pytest.raises(TypeError, match="covered must be a Position"):
        cu.on_read(ticket, covered=("e1", 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="frame must be a dict"):
        cu.on_read(ticket, [(None, b"x")])  # type: ignore[list-item]
    # A refused read changed nothing: it can still be applied.
    assert cu.holding and cu.events() == []
    assert cu.on_read(ticket, [msg(1)]) is True
    assert describe(cu.events()) == ["R:me1:1", ("done", None)]


# ---------------------------------------------------------------------- properties

# One channel's life as the Redis broker sees it: messages are stored in offset order and
# arrive live unless the pub/sub connection is down; a reconnect drops what was held; a refill
# (hold, then a read from the stream) returns stored messages from at or before the position
# up to at least what was stored when it started.
_OPS = st.lists(
    st.one_of(
        st.just(("pub",)),
        st.just(("eph",)),
        st.just(("mark",)),
        st.just(("hold",)),
        st.just(("outage",)),
        st.just(("abort",)),
        st.just(("stale",)),
        st.tuples(st.just("read"), st.integers(0, 4), st.integers(0, 6)),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(ops=_OPS)
def test_any_interleaving_outputs_each_offset_once_in_order_and_marks_in_place(ops: list[Any]) -> None:
    cu = CatchUp()
    stored = 0  # newest stored offset
    lost = False  # the live feed is down: publishes are not delivered live
    gap = False  # an outage happened and no read filled it since
    ticket: int | None = None
    hold_base = 0  # what was stored when the read in flight started
    stale: list[int] = []
    live_in: list[Any] = []  # live tokens fed (offsets, ("eph", n), ("mark", n)), in order
    held_tokens: list[Any] = []  # of those, the ones held now (not offsets)
    expected_tokens: set[Any] = set()  # ephemerals and marks that must come out
    out: list[CatchUpEvent] = []

    def drain() -> None:
        out.extend(cu.events())

    for n, op in enumerate(ops, 1):
        kind = op[0]
        if kind == "pub":
            stored += 1
            if not lost:
                cu.on_live(*msg(stored))
                live_in.append(stored)
        elif kind == "eph" and not lost:
            cu.on_live(*eph(n))
            live_in.append(("eph", n))
            if cu.holding:
                held_tokens.append(("eph", n))
            else:
                expected_tokens.add(("eph", n))
        elif kind == "mark":
            cu.mark(n)
            live_in.append(("mark", n))
            if cu.holding:
                held_tokens.append(("mark", n))
            else:
                expected_tokens.add(("mark", n))
        elif kind == "hold":
            if ticket is not None:
                stale.append(ticket)
            ticket = cu.hold()
            lost = False  # subscribed again: every later publish arrives live
            hold_base = stored
        elif kind == "outage":
            cu.discard()
            held_tokens.clear()
            if ticket is not None:
                stale.append(ticket)
                ticket = None
            lost = gap = True
        elif kind == "abort" and ticket is not None and not gap:
            # Only when nothing is missing: an abort after an outage would leave a hole, which
            # is the caller's to avoid (it discards and refills instead).
            assert cu.abort(ticket)
            expected_tokens.update(held_tokens)
            held_tokens.clear()
            ticket = None
        elif kind == "stale" and stale:
            before = (cu.holding, cu.held_frames, cu.position)
            assert cu.on_read(stale[-1], [msg(1)]) is False
            assert cu.abort(stale[-1]) is False
            assert (cu.holding, cu.held_frames, cu.position) == before
        elif kind == "read" and ticket is not None:
            _, back, extra = op
            pos = cu.position.offset if cu.position is not None else 0
            start = max(1, pos + 1 - back)
            end = min(stored, hold_base + extra)
            assert cu.on_read(ticket, [msg(o) for o in range(start, end + 1)])
            expected_tokens.update(held_tokens)
            held_tokens.clear()
            ticket = None
            gap = False
        drain()

    # Finish: a last refill brings the stream up to date, as a reconnect would.
    if lost or gap or ticket is not None:
        final = cu.hold()
        pos = cu.position.offset if cu.position is not None else 0
        assert cu.on_read(final, [msg(o) for o in range(pos + 1, stored + 1)])
        expected_tokens.update(held_tokens)
        drain()

    offsets = [ev.frame["offset"] for ev in out if isinstance(ev, Deliver) and "offset" in ev.frame]
    # In order, each offset once, none lost.
    assert offsets == list(range(1, stored + 1))
    # Every ephemeral and mark that was not dropped with a discard comes out exactly once.
    tokens = [
        ("mark", ev.label) if isinstance(ev, Marker) else ("eph", ev.frame["data"])
        for ev in out
        if isinstance(ev, Marker) or (isinstance(ev, Deliver) and ev.frame.get("ephemeral"))
    ]
    assert sorted(tokens) == sorted(expected_tokens) and len(tokens) == len(set(tokens))
    # Live frames and marks keep the order they came in (a subsequence of the input).
    live_out: list[Any] = []
    for ev in out:
        if isinstance(ev, Marker):
            live_out.append(("mark", ev.label))
        elif isinstance(ev, Deliver) and not ev.read:
            live_out.append(ev.frame["offset"] if "offset" in ev.frame else ("eph", ev.frame["data"]))
    positions = {token: i for i, token in enumerate(live_in)}
    indices = [positions[token] for token in live_out]
    assert indices == sorted(indices)
    # A read's frames come out together, right before its ReadDone (so before what it held).
    for i, ev in enumerate(out):
        if isinstance(ev, Deliver) and ev.read:
            after = out[i + 1]  # never last: ReadDone follows
            assert isinstance(after, ReadDone) or (isinstance(after, Deliver) and after.read)


_LIVE = st.lists(st.sampled_from(["msg", "eph", "join", "mark"]), max_size=30)


@settings(max_examples=400, deadline=None)
@given(base=st.integers(0, 5), items=_LIVE, snap_at=st.integers(0, 30), is_new=st.booleans())
def test_gateway_catch_up_skips_exactly_what_a_new_subscription_s_snapshot_covers(
    base: int, items: list[str], snap_at: int, is_new: bool
) -> None:
    """The gateway's subscribe: live frames arrive while the snapshot is read at some point;
    a new subscription's history frame covers what was stored by then, an existing live one's
    receiver gets every held frame; marks (presence_sync) stay where they were made."""
    cu = CatchUp()
    ticket = cu.hold()
    offset = base  # stored before the subscribe started (not held: delivered before)
    covered = base
    expected: list[Any] = []
    for i, item in enumerate(items):
        if i == snap_at:
            covered = offset  # the snapshot was read here
        if item == "msg":
            offset += 1
            cu.on_live(*msg(offset))
            expected.append((offset, f"me1:{offset}"))
        elif item == "eph":
            cu.on_live(*eph(i))
            expected.append((None, f"eph{i}"))
        elif item == "join":
            cu.on_live(*join(i))
            expected.append((None, f"join{i}"))
        else:
            cu.mark(i)
            expected.append((None, ("mark", i)))
    if snap_at >= len(items):
        covered = offset
    cover = Position("e1", covered) if is_new else None
    assert cu.on_read(ticket, covered=cover)
    got = describe(cu.events())
    wanted = [("done", cover)] + [
        value for off, value in expected if not (is_new and off is not None and off <= covered)
    ]
    assert got == wanted
