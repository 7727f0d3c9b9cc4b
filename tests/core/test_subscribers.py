"""SubscriberSet: several subscribers on one channel subscription (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.channel import (
    ChannelMessage,
    ChannelState,
    Reset,
    SubscriptionChanged,
)
from rtwidgets.core.presence import PresenceSynced
from rtwidgets.core.subscribers import SubscriberPhase, SubscriberSet, presence_conflict


def msg(offset: int | None, epoch: str = "e1", key: str | None = None, data: Any = "x") -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "message", "channel": "c", "data": data, "epoch": epoch}
    if offset is not None:
        frame["offset"] = offset
        frame["eventId"] = str(offset)
    if key is not None:
        frame["key"] = key
    return frame


def history(offset: int, items: list[dict[str, Any]], state: dict[str, Any] | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "history", "channel": "c", "data": items, "epoch": "e1"}
    frame["offset"] = offset
    if state is not None:
        frame["state"] = state
    return frame


def offsets(pairs: list[tuple[Any, Any]], who: Any) -> list[int]:
    return [
        ev.frame["offset"]
        for s, ev in pairs
        if s is who and isinstance(ev, ChannelMessage) and "offset" in ev.frame
    ]


def test_a_subscriber_without_catch_up_is_live_at_once() -> None:
    subs = SubscriberSet("c")
    a = subs.add()
    assert a.phase is SubscriberPhase.LIVE and subs.waiting() == []
    routed = subs.route([ChannelMessage("c", msg(1))])
    assert offsets(routed, a) == [1]


def test_catch_up_then_live_without_gap_or_duplicate() -> None:
    subs = SubscriberSet("c")
    live = subs.add()
    late = subs.add(history=2)
    assert subs.waiting() == [late]
    subs.start_catch_up(late, "op-1")
    # Messages before its history frame are covered by its snapshot: not for it.
    routed = subs.route([ChannelMessage("c", msg(4)), ChannelMessage("c", msg(5))])
    assert offsets(routed, live) == [4, 5] and offsets(routed, late) == []
    assert subs.catching_up(lambda r: r == "op-1") is late
    events = subs.on_catch_up(late, history(6, [msg(6), msg(5)]))
    assert [e.frame["offset"] for e in events if isinstance(e, ChannelMessage)] == [5, 6]
    assert isinstance(events[-1], SubscriptionChanged) and events[-1].current is ChannelState.SUBSCRIBED
    assert late.phase is SubscriberPhase.LIVE
    # The gateway forwards the live subscription's frames whole: 6 again, then newer.
    routed = subs.route([ChannelMessage("c", f) for f in (msg(6), msg(7), msg(None))])
    assert offsets(routed, live) == [6, 7]
    assert offsets(routed, late) == [7]  # 6 was in its history
    assert sum(1 for s, e in routed if s is late and isinstance(e, ChannelMessage)) == 2  # + the ephemeral


def test_lost_catch_up_waits_again_and_ignores_messages() -> None:
    subs = SubscriberSet("c")
    late = subs.add(state=True)
    subs.start_catch_up(late, "op")
    subs.catch_up_lost(late)
    assert late.phase is SubscriberPhase.WAITING and late.request is None
    assert subs.route([ChannelMessage("c", msg(1))]) == []
    assert subs.on_catch_up(late, history(1, [])) == []  # not catching up: a stale frame changes nothing


def test_keyed_state_per_subscriber() -> None:
    subs = SubscriberSet("c")
    plain = subs.add()
    keyed = subs.add(state=True)
    subs.start_catch_up(keyed, 1)
    subs.on_catch_up(keyed, history(3, [], state={"a": msg(3, key="a")}))
    assert keyed.keyed_state is not None and set(keyed.keyed_state) == {"a"}
    subs.route([ChannelMessage("c", msg(3, key="a", data="old")), ChannelMessage("c", msg(4, key="b"))])
    assert keyed.keyed_state["a"]["offset"] == 3 and keyed.keyed_state["a"]["data"] == "x"  # 3 not re-applied
    subs.route([ChannelMessage("c", msg(5, key="a", data=None))])  # data None deletes
    assert set(keyed.keyed_state) == {"b"}
    assert plain.keyed_state is None


def test_reset_reaches_live_subscribers_and_lifts_the_floor() -> None:
    subs = SubscriberSet("c")
    a = subs.add(state=True)
    subs.start_catch_up(a, 1)
    subs.on_catch_up(a, history(10, []))
    waiting = subs.add(history=1)
    reset = Reset("c", "e2", 2, "2", (msg(1, "e2"), msg(2, "e2")), {"k": msg(2, "e2", key="k")}, {})
    routed = subs.route([reset])
    assert [s for s, _ in routed] == [a]  # the waiting one gets its own, newer catch-up
    assert a.floor is None and a.keyed_state is not None and set(a.keyed_state) == {"k"}
    assert offsets(subs.route([ChannelMessage("c", msg(3, "e2"))]), a) == [3]
    assert waiting.phase is SubscriberPhase.WAITING


def test_floor_is_per_epoch() -> None:
    subs = SubscriberSet("c")
    a = subs.add(history=1)
    subs.start_catch_up(a, 1)
    subs.on_catch_up(a, history(10, [msg(10)]))
    assert offsets(subs.route([ChannelMessage("c", msg(1, "e2"))]), a) == [1]  # another epoch


def test_other_events_reach_everyone_but_closed() -> None:
    subs = SubscriberSet("c")
    a, b = subs.add(), subs.add(history=3)
    ev = PresenceSynced("c", (), (), ())
    assert [s for s, _ in subs.route([ev])] == [a, b]
    subs.remove(a)
    assert [s for s, _ in subs.route([ev])] == [b] and a.phase is SubscriberPhase.CLOSED
    assert len(subs) == 1


def test_presence_union_and_conflicts() -> None:
    subs = SubscriberSet("c")
    plain = subs.add()
    assert not subs.presence and subs.presence_options() == {}
    p1 = subs.add(presence=True, presence_data={"name": "Ann"})
    p2 = subs.add(presence_data={"color": "red"})  # data implies presence
    assert subs.presence and subs.presence_data == {"name": "Ann", "color": "red"}
    assert subs.catch_up_options(plain) == {"presence": True, "presenceData": {"name": "Ann", "color": "red"}}
    with pytest.raises(ValueError, match="'name' is 'Ann' there and 'Bob' here"):
        subs.add(presence_data={"name": "Bob"})
    assert len(subs) == 3  # the refused one was not added
    subs.add(presence_data={"name": "Ann"})  # the same value is fine
    # An explicit update wins over the others' keys.
    assert subs.update_presence(p2, {"color": "red", "name": "Annie"}) == {"name": "Annie", "color": "red"}
    with pytest.raises(ValueError, match="presence is not enabled"):
        subs.update_presence(plain, {"x": 1})
    subs.remove(p2)
    assert subs.presence_data == {"name": "Ann"}
    subs.remove(p1)
    assert subs.presence  # the fourth still wants it


def test_presence_conflict_text() -> None:
    assert presence_conflict("c", [None, {"a": 1}], {"a": 1, "b": 2}) is None
    assert presence_conflict("c", [{"a": 1}], None) is None
    reason = presence_conflict("c", [{"a": 1}], {"a": 2})
    assert reason is not None and "close the other model" in reason


def test_bad_arguments() -> None:
    subs = SubscriberSet("c")
    with pytest.raises(ValueError, match="history"):
        subs.add(history=-1)
    with pytest.raises(ValueError, match="dict"):
        subs.add(presence_data=["x"])  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(0, 30),
    snapshot_extra=st.integers(0, 5),
    history_n=st.integers(1, 8),
    after=st.integers(0, 10),
)
def test_property_late_subscriber_sees_a_fresh_subscribers_stream(
    start: int, snapshot_extra: int, history_n: int, after: int
) -> None:
    """Whatever messages arrive before and after a late subscriber's snapshot, it sees exactly
    the newest ``history_n`` stored messages at its snapshot, then every later one, once each,
    in order; the live subscriber sees every message once."""
    subs = SubscriberSet("c")
    live = subs.add()
    late = subs.add(history=history_n)
    subs.start_catch_up(late, "r")
    seen: dict[int, list[int]] = {live.id: [], late.id: []}

    def feed(frames: list[dict[str, Any]]) -> None:
        for s, ev in subs.route([ChannelMessage("c", f) for f in frames]):
            if isinstance(ev, ChannelMessage):
                seen[s.id].append(ev.frame["offset"])

    feed([msg(o) for o in range(1, start + 1)])  # delivered before the gateway read the snapshot
    snap = start + snapshot_extra  # stored before the snapshot, delivery still on its way
    items = [msg(o) for o in range(max(1, snap - history_n + 1), snap + 1)]
    for ev in subs.on_catch_up(late, history(snap, items)):
        if isinstance(ev, ChannelMessage):
            seen[late.id].append(ev.frame["offset"])
    feed([msg(o) for o in range(start + 1, snap + after + 1)])  # forwarded whole after it
    total = snap + after
    assert seen[live.id] == list(range(1, total + 1))
    assert seen[late.id] == list(range(max(1, snap - history_n + 1), total + 1))
