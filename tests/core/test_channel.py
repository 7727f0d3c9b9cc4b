"""Unit tests for the sans-I/O channel core: resume position, dedupe by offset, resets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.core.channel import (
    RESUME_ALL_HISTORY,
    ChannelCore,
    ChannelManager,
    ChannelMessage,
    ChannelOptions,
    ChannelState,
    Duplicate,
    Gap,
    Reset,
    SubscriptionChanged,
    SyncReceived,
)
from rtwidgets.core.presence import MemberJoined, PresenceSynced


def msg(offset: int | None, epoch: str = "e1", channel: str = "ch", **extra: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "message", "channel": channel, "data": offset, "epoch": epoch}
    if offset is not None:
        frame["offset"] = offset
        frame["eventId"] = f"{epoch}-{offset}"
    frame.update(extra)
    return frame


def delivered(events: list[Any]) -> list[Any]:
    return [e.frame.get("offset") for e in events if isinstance(e, ChannelMessage)]


def subscribed(core: ChannelCore, ack: dict[str, Any] | None = None) -> list[Any]:
    core.subscribe_frame()
    return core.on_subscribe_ack(ack or {"type": "ack", "id": 1, "epoch": "e1", "offset": 0})


def test_fresh_subscribe_frame_and_states() -> None:
    core = ChannelCore(
        "ch", ChannelOptions(presence=True, presence_data={"name": "A"}, history=10, state=True)
    )
    assert core.state is ChannelState.UNSUBSCRIBED
    frame, events = core.subscribe_frame()
    assert frame == {
        "type": "subscribe",
        "channel": "ch",
        "options": {"presence": True, "presenceData": {"name": "A"}, "history": 10, "state": True},
    }
    assert events == [SubscriptionChanged("ch", ChannelState.UNSUBSCRIBED, ChannelState.SUBSCRIBING)]
    core.on_frame({"type": "history", "channel": "ch", "data": [], "epoch": "e1", "offset": 0})
    events = core.on_subscribe_ack({"type": "ack", "id": 1, "epoch": "e1", "offset": 0})
    assert core.state is ChannelState.SUBSCRIBED
    assert core.epoch == "e1"


def test_resubscribe_frame_resumes_from_last_event() -> None:
    core = ChannelCore("ch", ChannelOptions(presence=True))
    subscribed(core)
    core.on_frame(msg(1))
    core.on_frame(msg(2))
    core.on_connection_lost()
    assert core.state is ChannelState.SUBSCRIBING
    frame, _ = core.subscribe_frame()
    assert frame["options"] == {"presence": True, "lastEventId": "e1-2", "epoch": "e1"}


def test_presence_update_is_remembered_for_resubscribe() -> None:
    core = ChannelCore("ch", ChannelOptions(presence=True, presence_data={"v": 1}))
    assert core.presence_update_frame({"v": 2}) == {
        "type": "presence_update",
        "channel": "ch",
        "data": {"v": 2},
    }
    frame, _ = core.subscribe_frame()
    assert frame["options"]["presenceData"] == {"v": 2}
    with pytest.raises(ValueError, match="presence is not enabled"):
        ChannelCore("x").presence_update_frame({})


def test_publish_frames_carry_fifo_seq() -> None:
    core = ChannelCore("ch")
    f1 = core.publish_frame({"a": 1}, msg_id="m1")
    f2 = core.publish_frame(None, key="k", ephemeral=False)
    f3 = core.publish_frame("x", ephemeral=True)
    assert [f["seq"] for f in (f1, f2, f3)] == [1, 2, 3]
    assert f1 == {"type": "publish", "channel": "ch", "data": {"a": 1}, "seq": 1, "msgId": "m1"}
    assert f2["key"] == "k" and "ephemeral" not in f2
    assert f3["ephemeral"] is True


def test_dedupe_by_offset_within_epoch() -> None:
    core = ChannelCore("ch")
    subscribed(core)
    events = []
    for off in [1, 2, 2, 1, 3]:
        events += core.on_frame(msg(off))
    assert delivered(events) == [1, 2, 3]
    assert len([e for e in events if isinstance(e, Duplicate)]) == 2
    assert (core.last_offset, core.last_event_id, core.duplicates) == (3, "e1-3", 2)


def test_ephemeral_messages_are_always_delivered() -> None:
    core = ChannelCore("ch")
    subscribed(core)
    events = core.on_frame(msg(1)) + core.on_frame(msg(None, ephemeral=True)) + core.on_frame(msg(None))
    assert delivered(events) == [1, None, None]
    assert core.last_offset == 1


def test_gap_is_reported_and_message_delivered() -> None:
    core = ChannelCore("ch")
    subscribed(core)
    events = core.on_frame(msg(1)) + core.on_frame(msg(4))
    assert Gap("ch", 2, 4) in events
    assert delivered(events) == [1, 4]


def test_new_epoch_restarts_offsets() -> None:
    # A live message from a new epoch means the history was replaced: it is held (EpochChanged
    # asks the I/O layer for a sync) and follows the snapshot's Reset; offsets restart there.
    core = ChannelCore("ch")
    subscribed(core)
    events = core.on_frame(msg(5)) + core.on_frame(msg(1, epoch="e2")) + core.on_frame(msg(1, epoch="e2"))
    assert delivered(events) == [5]
    assert any(type(e).__name__ == "EpochChanged" for e in events)
    snapshot = {
        "type": "sync_response",
        "channel": "ch",
        "syncType": "snapshot",
        "events": [],
        "state": {},
        "latestEventId": None,
        "version": 0,
        "epoch": "e2",
    }
    events = core.on_frame(snapshot)
    assert delivered(events) == [1]  # the second copy of offset 1 is a duplicate
    assert core.epoch == "e2"


def test_live_messages_before_history_are_held_until_replay() -> None:
    core = ChannelCore("ch", ChannelOptions(history=3))
    subscribed(core)
    for off in (1, 2, 3):
        core.on_frame(msg(off))
    core.on_connection_lost()
    core.subscribe_frame()
    # A live frame races ahead of the catch-up (the gateway orders them; the core does not rely on it).
    assert core.on_frame(msg(6)) == []
    events = core.on_subscribe_ack({"type": "ack", "id": 2, "epoch": "e1", "offset": 5})
    assert delivered(events) == []  # history still expected: keep holding
    events = core.on_frame(
        {
            "type": "history",
            "channel": "ch",
            "recovered": True,
            "data": [msg(5), msg(3), msg(4)],  # unsorted, overlapping what we had
            "epoch": "e1",
            "offset": 5,
        }
    )
    assert delivered(events) == [4, 5, 6]
    assert [e.replayed for e in events if isinstance(e, ChannelMessage)] == [True, True, False]


def test_ack_without_news_releases_buffer() -> None:
    core = ChannelCore("ch")
    subscribed(core)
    core.on_frame(msg(1))
    core.on_connection_lost()
    core.subscribe_frame()
    core.on_frame(msg(2))
    # Nothing stored after offset 1 when the gateway took its snapshot: no history needed.
    events = core.on_subscribe_ack({"type": "ack", "id": 2, "epoch": "e1", "offset": 1})
    assert delivered(events) == [2]


def test_unrecovered_history_resets_with_state() -> None:
    core = ChannelCore("ch", ChannelOptions(state=True))
    subscribed(core)
    core.on_frame(msg(1, key="a"))
    core.on_connection_lost()
    core.subscribe_frame()
    state = {"a": msg(50, key="a"), "b": msg(60, key="b")}
    history = {
        "type": "history",
        "channel": "ch",
        "recovered": False,
        "data": [msg(59), msg(60, key="b")],
        "epoch": "e1",
        "offset": 60,
        "latestEventId": "e1-60",
        "state": state,
    }
    events = core.on_frame(history)
    (reset,) = [e for e in events if isinstance(e, Reset)]
    assert reset.state == state
    assert [e["offset"] for e in reset.events] == [59, 60]
    assert (reset.offset, reset.latest_event_id) == (60, "e1-60")
    assert delivered(events) == []  # the reset carries them; they are not also messages
    assert core.keyed_state == state
    assert core.on_frame(msg(60)) == [Duplicate("ch", msg(60))]
    assert delivered(core.on_frame(msg(61))) == [61]


def test_keyed_state_tracks_live_messages() -> None:
    core = ChannelCore("ch", ChannelOptions(state=True))
    subscribed(core)
    core.on_frame(msg(1, key="x"))
    core.on_frame(msg(2, key="y"))
    assert set(core.keyed_state or {}) == {"x", "y"}
    deletion = msg(3, key="x")
    deletion["data"] = None
    core.on_frame(deletion)
    assert set(core.keyed_state or {}) == {"y"}


def test_sync_response_delta_and_snapshot() -> None:
    core = ChannelCore("ch")
    subscribed(core)
    core.on_frame(msg(1))
    delta = {"type": "sync_response", "channel": "ch", "syncType": "delta", "events": [msg(1), msg(2)]}
    events = core.on_frame(delta)
    assert delivered(events) == [2]
    assert events[-1] == SyncReceived("ch", delta)
    snapshot = {
        "type": "sync_response",
        "channel": "ch",
        "syncType": "snapshot",
        "events": [msg(1, epoch="e9")],
        "state": {},
        "latestEventId": "e9-1",
        "version": 1,
        "epoch": "e9",
    }
    events = core.on_frame(snapshot)
    assert isinstance(events[0], Reset)
    assert (core.epoch, core.last_offset, core.last_event_id) == ("e9", 1, "e9-1")


def test_presence_frames_and_messages_after_unsubscribe() -> None:
    core = ChannelCore("ch", ChannelOptions(presence=True))
    subscribed(core)
    m = {"clientId": "c1", "userId": "u1", "data": {}}
    events = core.on_frame({"type": "presence_join", "channel": "ch", "member": m})
    assert events == [MemberJoined("ch", m)]
    events = core.on_frame({"type": "presence_sync", "channel": "ch", "members": [m]})
    assert isinstance(events[0], PresenceSynced)
    core.unsubscribe_frame()
    assert core.state is ChannelState.UNSUBSCRIBING
    assert core.on_frame(msg(1)) == []
    core.on_unsubscribed()
    assert core.state is ChannelState.UNSUBSCRIBED
    assert core.presence.members() == []


def test_unsubscribing_then_connection_lost_completes_the_unsubscribe() -> None:
    core = ChannelCore("ch")
    subscribed(core)
    core.unsubscribe_frame()
    core.on_connection_lost()
    assert core.state is ChannelState.UNSUBSCRIBED


def test_manager_routes_by_channel() -> None:
    mgr = ChannelManager()
    a = mgr.add("a")
    b = mgr.add("b")
    subscribed(a)
    subscribed(b)
    with pytest.raises(ValueError, match="already subscribed"):
        mgr.add("a")
    assert delivered(mgr.route(msg(1, channel="a"))) == [1]
    assert delivered(mgr.route(msg(7, channel="b"))) == [7]
    assert mgr.route(msg(1, channel="zzz")) == []
    assert mgr.unrouted == 1
    assert (a.last_offset, b.last_offset) == (1, 7)
    events = mgr.on_connection_lost()
    assert {e.channel for e in events if isinstance(e, SubscriptionChanged)} == {"a", "b"}
    assert mgr.remove("a") is a
    assert "a" not in mgr and len(mgr) == 1


# ----------------------------------------------------------------------------- properties


@given(st.lists(st.integers(1, 30), max_size=80))
@settings(max_examples=200)
def test_any_arrival_order_delivers_each_offset_at_most_once_in_order(arrivals: list[int]) -> None:
    core = ChannelCore("ch")
    subscribed(core)
    out: list[int] = []
    for off in arrivals:
        out += delivered(core.on_frame(msg(off)))
    assert out == sorted(set(out))  # strictly increasing: at most once, in order
    assert set(out) <= set(arrivals)


@given(
    st.lists(
        st.one_of(
            st.just(("publish", 0)),
            st.just(("drop", 0)),  # the socket dies: live frames stop until the resubscribe
            st.tuples(st.just("dup"), st.integers(0, 1000)),
            st.tuples(st.just("reconnect"), st.integers(0, 3)),  # int: stale frames re-sent first
        ),
        max_size=60,
    )
)
@settings(max_examples=150, deadline=None)
def test_resume_is_exactly_once(script: list[tuple[str, int]]) -> None:
    """A simulated gateway with full history: drops, duplicates and reconnects in any order
    still deliver every published offset exactly once and in order."""
    core = ChannelCore("ch")
    subscribed(core)
    store: list[dict[str, Any]] = []
    out: list[int] = []
    online = True

    def resubscribe(stale: int) -> None:
        core.on_connection_lost()
        frame, _ = core.subscribe_frame()
        last = frame["options"].get("lastEventId")
        for f in store[-stale:] if stale else []:
            out.extend(delivered(core.on_frame(f)))
        if last is not None:
            after = [f for f in store if f["offset"] > int(last.split("-")[1])]
            history = {
                "type": "history",
                "channel": "ch",
                "recovered": True,
                "data": after,
                "epoch": "e1",
                "offset": len(store),
            }
            out.extend(delivered(core.on_frame(history)))
        elif store:
            # First subscribe never saw a message: the test asks for all history (like history=N).
            history = {"type": "history", "channel": "ch", "data": list(store), "epoch": "e1"}
            out.extend(delivered(core.on_frame(history)))
        out.extend(delivered(core.on_subscribe_ack({"type": "ack", "epoch": "e1", "offset": len(store)})))

    for action, arg in script:
        if action == "publish":
            f = msg(len(store) + 1)
            store.append(f)
            if online:
                out.extend(delivered(core.on_frame(f)))
        elif action == "drop":
            online = False
        elif action == "dup" and store and online:
            out.extend(delivered(core.on_frame(store[arg % len(store)])))
        elif action == "reconnect":
            resubscribe(arg)
            online = True
    resubscribe(0)
    assert out == list(range(1, len(store) + 1))


def test_subscribe_ack_sets_the_resume_baseline() -> None:
    core = ChannelCore("ch")
    core.subscribe_frame()
    core.on_frame(msg(8))  # live, newer than the snapshot point: held until the ack
    events = core.on_subscribe_ack({"type": "ack", "epoch": "e1", "offset": 7, "latestEventId": "e1-7"})
    assert delivered(events) == [8]
    assert not [e for e in events if isinstance(e, Gap)]  # 8 follows the snapshot point 7
    core.on_connection_lost()
    frame, _ = core.subscribe_frame()
    assert frame["options"] == {"lastEventId": "e1-8", "epoch": "e1"}


def test_resume_after_joining_an_empty_channel_asks_for_all_history() -> None:
    core = ChannelCore("ch")
    subscribed(core)  # ack: epoch e1, offset 0 -> nothing stored when we joined
    core.on_connection_lost()
    frame, _ = core.subscribe_frame()
    assert frame["options"] == {"history": RESUME_ALL_HISTORY}
    history = {"type": "history", "channel": "ch", "data": [msg(1), msg(2)], "epoch": "e1", "offset": 2}
    assert delivered(core.on_frame(history)) == [1, 2]
    # Had the gateway retained only the newest events, the missing start is reported.
    late = ChannelCore("ch")
    subscribed(late)
    late.on_connection_lost()
    late.subscribe_frame()
    events = late.on_frame({"type": "history", "channel": "ch", "data": [msg(4)], "epoch": "e1", "offset": 4})
    assert Gap("ch", 1, 4) in events


def test_queued_subscribe_keeps_buffering_across_connection_loss() -> None:
    core = ChannelCore("ch", ChannelOptions(history=2))
    core.subscribe_frame()  # queued while offline; the socket drops again before it is sent
    core.on_connection_lost()
    assert core.on_frame(msg(3)) == []  # live frame before the catch-up: held
    history = {"type": "history", "channel": "ch", "data": [msg(1), msg(2)], "epoch": "e1", "offset": 2}
    assert delivered(core.on_frame(history)) == [1, 2, 3]
