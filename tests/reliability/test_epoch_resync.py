"""History replaced under a live subscription (an epoch change): the client core holds live
frames, asks for a sync, and rebuilds from the snapshot; the gateway's sync snapshot carries the
keyed state. (The end-to-end version with a real Redis restart is in test_fault_redis.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from rtwidgets.core.channel import ChannelCore, ChannelMessage, ChannelOptions, EpochChanged, Reset
from rtwidgets.gateway import Gateway

pytestmark = pytest.mark.fault


def msg(offset: int, epoch: str, data: Any = None, key: str | None = None) -> dict[str, Any]:
    frame = {"type": "message", "channel": "c", "offset": offset, "epoch": epoch}
    frame["eventId"] = f"{epoch}-{offset}"
    frame["data"] = data if data is not None else offset
    if key is not None:
        frame["key"] = key
    return frame


def subscribed(state: bool = False) -> ChannelCore:
    core = ChannelCore("c", ChannelOptions(state=state))
    core.subscribe_frame()
    core.on_subscribe_ack({"type": "ack", "channel": "c", "epoch": "e1", "offset": 0})
    return core


def test_new_epoch_on_a_live_message_holds_frames_until_the_snapshot() -> None:
    core = subscribed(state=True)
    assert [type(e) for e in core.on_frame(msg(1, "e1", key="k"))] == [ChannelMessage]
    events = core.on_frame(msg(3, "e2"))
    assert events == [EpochChanged("c", "e1", "e2")] and core.resyncing
    assert core.on_frame(msg(4, "e2")) == []  # held, not delivered
    assert core.sync_frame() == {"type": "sync", "channel": "c", "lastEventId": "e1-1", "epoch": "e1"}
    snapshot = {
        "type": "sync_response",
        "channel": "c",
        "syncType": "snapshot",
        "events": [msg(1, "e2"), msg(2, "e2"), msg(3, "e2", key="k2")],
        "state": {"k2": msg(3, "e2", key="k2")},
        "latestEventId": "e2-3",
        "version": 3,
        "epoch": "e2",
    }
    events = core.on_frame(snapshot)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Reset", "SyncReceived", "Duplicate", "ChannelMessage"], kinds
    reset = next(e for e in events if isinstance(e, Reset))
    assert reset.epoch == "e2" and [e["offset"] for e in reset.events] == [1, 2, 3]
    assert core.keyed_state is not None and set(core.keyed_state) == {"k2"}  # old keys are gone
    delivered = [e.frame["offset"] for e in events if isinstance(e, ChannelMessage)]
    assert delivered == [4] and not core.resyncing
    assert [type(e) for e in core.on_frame(msg(5, "e2"))] == [ChannelMessage]


def test_failed_resync_delivers_what_was_held_and_reconnect_cancels_it() -> None:
    core = subscribed()
    core.on_frame(msg(1, "e1"))
    core.on_frame(msg(1, "e2"))
    events = core.on_resync_failed()
    assert [e.frame["offset"] for e in events if isinstance(e, ChannelMessage)] == [1]
    assert not core.resyncing and core.on_resync_failed() == []
    core.on_frame(msg(1, "e3"))
    assert core.resyncing
    core.on_connection_lost()  # the resubscribe (lastEventId + old epoch) takes over
    assert not core.resyncing


def test_ephemeral_and_same_epoch_messages_never_trigger_a_resync() -> None:
    core = subscribed()
    assert not any(isinstance(e, EpochChanged) for e in core.on_frame(msg(1, "e1")))
    eph = {"type": "message", "channel": "c", "data": 1, "ephemeral": True, "epoch": "zz"}
    assert [type(e) for e in core.on_frame(eph)] == [ChannelMessage]
    assert not core.resyncing


async def test_sync_snapshot_after_lost_position_carries_the_keyed_state(make_gateway, connect) -> None:
    gw: Gateway = await make_gateway()
    client = await connect(gw, "alice")
    await client.publish("doc", {"title": "T"}, key="title")
    await client.publish("doc", "plain")
    stale = {"type": "sync", "channel": "doc", "lastEventId": "1", "epoch": "gone"}
    answer, frames = await client.request(stale)
    assert answer["type"] == "ack"
    [response] = [f for f in frames if f["type"] == "sync_response"]
    assert response["syncType"] == "snapshot"
    assert set(response["state"]) == {"title"} and response["state"]["title"]["data"] == {"title": "T"}
    assert [e["data"] for e in response["events"]] == [{"title": "T"}, "plain"]
