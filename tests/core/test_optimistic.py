"""Unit tests and hypothesis properties for rtwidgets.core.optimistic (pure logic, no I/O)."""

from __future__ import annotations

import itertools
import random
from collections import deque
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtwidgets.core.optimistic import (
    Confirmed,
    Created,
    Deleted,
    OptimisticStore,
    RolledBack,
    StoreError,
    StoreEvent,
    Updated,
)

CH = "todos"


def ids(prefix: str = "op") -> Any:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def store(**kw: Any) -> OptimisticStore:
    kw.setdefault("new_id", ids())
    return OptimisticStore(CH, **kw)


def echo(publish: dict[str, Any], offset: int, epoch: str = "e1") -> dict[str, Any]:
    """The ``message`` frame the gateway fans out for a publish."""
    frame = {
        "type": "message",
        "id": f"evt{offset}",
        "eventId": f"evt{offset}",
        "channel": CH,
        "data": publish["data"],
        "senderId": "u1",
        "clientId": "c1",
        "timestamp": 1_000_000 + offset,
        "offset": offset,
        "epoch": epoch,
        "key": publish["key"],
    }
    if "msgId" in publish:
        frame["msgId"] = publish["msgId"]
    return frame


def remote(kind: str, item: dict[str, Any], offset: int, created_at: float = 0.0, **extra: Any):
    """A message published by another client."""
    data = (
        None
        if kind == "delete"
        else {"type": kind, "item": item, "opId": f"r{offset}", "createdAt": created_at}
    )
    return {**echo({"data": data, "key": item["id"], "msgId": f"r{offset}"}, offset), **extra}


# ---------------------------------------------------------------- construction
def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="channel"):
        OptimisticStore("")
    with pytest.raises(ValueError, match="ack_timeout"):
        OptimisticStore(CH, ack_timeout=0)
    with pytest.raises(ValueError, match="ack_timeout"):
        OptimisticStore(CH, ack_timeout=float("nan"))
    with pytest.raises(ValueError, match="duplicate"):
        OptimisticStore(CH, initial=[{"id": "a"}, {"id": "a"}])
    with pytest.raises(ValueError, match="'id'"):
        OptimisticStore(CH, initial=[{"name": "x"}])
    with pytest.raises(TypeError, match="mapping"):
        OptimisticStore(CH, initial=["a"])  # type: ignore[list-item]


def test_initial_items_keep_their_order_and_are_confirmed() -> None:
    s = store(initial=[{"id": "z"}, {"id": "a"}])
    assert s.data == [{"id": "z"}, {"id": "a"}]
    assert s.confirmed_data == s.data
    assert not s.has_pending_ops
    assert s.events() == []


# ---------------------------------------------------------------- local ops
def test_create_applies_at_once_and_returns_keyed_publish() -> None:
    s = store()
    item = {"id": "a", "text": "milk"}
    frame = s.create(item, 10.0)
    assert frame == {
        "type": "publish",
        "channel": CH,
        "data": {"type": "create", "item": item, "opId": "op1", "createdAt": 10.0},
        "key": "a",
        "msgId": "op1",
        "_id": "op1",
    }
    item["text"] = "mutated later"  # the store keeps its own copy
    assert s.data == [{"id": "a", "text": "milk"}]
    assert s.get("a") == {"id": "a", "text": "milk"}
    assert s.get("zz") is None
    assert s.confirmed_data == []
    assert s.pending_ops == frozenset({"op1"})
    assert s.has_pending_ops and s.is_pending("a") and not s.is_pending("b")
    assert [(p.op_id, p.kind, p.item_id, p.sent_at) for p in s.pending()] == [("op1", "create", "a", 10.0)]
    assert s.events() == [Created({"id": "a", "text": "milk"})]
    assert s.events() == []


def test_create_refuses_bad_input() -> None:
    s = store()
    s.create({"id": "a"}, 0.0)
    with pytest.raises(ValueError, match="already exists"):
        s.create({"id": "a"}, 0.0)
    with pytest.raises(ValueError, match="'id'"):
        s.create({"id": ""}, 0.0)
    with pytest.raises(ValueError, match="'id'"):
        s.create({"id": 3}, 0.0)
    with pytest.raises(TypeError, match="mapping"):
        s.create("a", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="now"):
        s.create({"id": "b"}, float("inf"))
    assert s.data == [{"id": "a"}]
    assert s.pending_ops == frozenset({"op1"})


def test_new_id_must_be_fresh() -> None:
    s = OptimisticStore(CH, new_id=lambda: "same")
    s.create({"id": "a"}, 0.0)
    with pytest.raises(ValueError, match="new_id"):
        s.create({"id": "b"}, 0.0)
    assert s.data == [{"id": "a"}]


def test_update_replaces_item_and_keeps_created_at() -> None:
    s = store()
    s.create({"id": "a", "n": 1}, 5.0)
    s.events()
    frame = s.update({"id": "a", "n": 2}, 9.0)
    assert frame["data"] == {"type": "update", "item": {"id": "a", "n": 2}, "opId": "op2", "createdAt": 5.0}
    assert (frame["key"], frame["msgId"]) == ("a", "op2")
    assert s.data == [{"id": "a", "n": 2}]
    assert s.events() == [Updated({"id": "a", "n": 2}, {"id": "a", "n": 1})]
    with pytest.raises(KeyError, match="no item"):
        s.update({"id": "missing"}, 0.0)


def test_delete_publishes_null_data_with_key() -> None:
    s = store(initial=[{"id": "a"}])
    frame = s.delete("a", 1.0)
    assert frame == {"type": "publish", "channel": CH, "data": None, "key": "a", "msgId": "op1", "_id": "op1"}
    assert s.data == []
    assert s.is_pending("a")
    assert s.events() == [Deleted("a", {"id": "a"})]
    with pytest.raises(KeyError, match="no item"):
        s.delete("a", 1.0)
    with pytest.raises(ValueError, match="item_id"):
        s.delete("", 1.0)


def test_data_is_ordered_by_created_at_then_id() -> None:
    s = store()
    s.create({"id": "b"}, 2.0)
    s.create({"id": "c"}, 1.0)
    s.create({"id": "a"}, 2.0)
    assert [i["id"] for i in s.data] == ["c", "a", "b"]


# ---------------------------------------------------------------- confirmation
def test_echo_confirms_and_server_version_replaces_optimistic() -> None:
    s = store()
    frame = s.create({"id": "a", "n": 1}, 0.0)
    s.events()
    server = echo(frame, 1)
    server["data"] = {**frame["data"], "item": {"id": "a", "n": 1, "by": "server"}}
    s.on_message(server)
    assert s.events() == [
        Confirmed("op1", "create", "a"),
        Updated({"id": "a", "n": 1, "by": "server"}, {"id": "a", "n": 1}),
    ]
    assert s.data == [{"id": "a", "n": 1, "by": "server"}]
    assert s.confirmed_data == s.data
    assert not s.has_pending_ops
    assert s.offset == 1 and s.epoch == "e1"


def test_ack_confirms_into_confirmed_layer_and_late_echo_is_harmless() -> None:
    s = store()
    frame = s.create({"id": "a"}, 0.0)
    s.events()
    assert s.on_frame({"type": "ack", "id": "op1"}) is True
    assert s.confirmed_data == [{"id": "a"}]
    assert s.events() == [Confirmed("op1", "create", "a")]
    s.on_message(echo(frame, 1))
    assert s.events() == []
    assert s.data == [{"id": "a"}]
    assert s.confirm("op1") is False
    assert s.on_frame({"type": "ack", "id": "op1"}) is False
    assert s.on_frame({"type": "ack", "id": 7}) is False


def test_ack_after_newer_remote_frame_for_same_item_keeps_server_order() -> None:
    s = store(initial=[{"id": "a", "v": 0}])
    mine = s.update({"id": "a", "v": "mine"}, 0.0)
    # Another client's update was stored before ours and reaches us before our ack.
    s.on_message(remote("update", {"id": "a", "v": "theirs"}, 1))
    assert s.data == [{"id": "a", "v": "mine"}]  # still pending on top
    s.on_frame({"type": "ack", "id": "op1"})
    # Order unknown without an offset: the frame seen stands until our echo settles it.
    assert s.data == [{"id": "a", "v": "theirs"}]
    s.on_message(echo(mine, 2))
    assert s.data == [{"id": "a", "v": "mine"}]


def test_ack_with_offset_orders_against_remote_frames() -> None:
    s = store(initial=[{"id": "a", "v": 0}])
    s.update({"id": "a", "v": "mine"}, 0.0)
    s.on_message(remote("update", {"id": "a", "v": "theirs"}, 1))
    s.on_frame({"type": "ack", "id": "op1", "offset": 2})
    assert s.confirmed_data == [{"id": "a", "v": "mine"}]
    # A frame for the item below the acked offset (delayed) must not overwrite it...
    s2 = store(initial=[{"id": "a", "v": 0}])
    s2.update({"id": "a", "v": "mine"}, 0.0)
    s2.on_frame({"type": "ack", "id": "op1", "offset": 5})
    s2.on_message(remote("update", {"id": "a", "v": "older"}, 3))
    assert s2.data == [{"id": "a", "v": "mine"}]
    assert s2.offset == 3  # ...but it still advances the watermark for other items


def test_ack_with_stale_offset_and_duplicate_ack_do_not_apply() -> None:
    s = store(initial=[{"id": "a", "v": 0}])
    s.update({"id": "a", "v": "mine"}, 0.0)
    s.on_message(remote("update", {"id": "a", "v": "theirs"}, 4))
    s.on_frame({"type": "ack", "id": "op1", "offset": 3})
    assert s.data == [{"id": "a", "v": "theirs"}]
    s.update({"id": "a", "v": "again"}, 0.0)
    s.on_frame({"type": "ack", "id": "op2", "duplicate": True})
    assert s.data == [{"id": "a", "v": "theirs"}]
    assert not s.has_pending_ops


# ---------------------------------------------------------------- rollback
def test_fail_rolls_back_create_update_delete() -> None:
    s = store(initial=[{"id": "a", "n": 1}, {"id": "b"}])
    s.create({"id": "c"}, 5.0)
    s.update({"id": "a", "n": 2}, 5.0)
    s.delete("b", 5.0)
    s.events()
    assert s.fail("op1", "forbidden") and s.fail("op2", "forbidden")
    assert s.on_frame({"type": "error", "id": "op3", "code": "rate_limited", "reason": "slow down"})
    assert s.data == [{"id": "a", "n": 1}, {"id": "b"}]
    assert s.events() == [
        RolledBack("op1", "create", "c", "forbidden"),
        Deleted("c", {"id": "c"}),
        RolledBack("op2", "update", "a", "forbidden"),
        Updated({"id": "a", "n": 1}, {"id": "a", "n": 2}),
        RolledBack("op3", "delete", "b", "rate_limited"),
        Created({"id": "b"}),
    ]
    assert s.fail("op1", "again") is False
    assert s.on_frame({"type": "error", "code": "bad_json", "reason": "x"}) is False


def test_rollback_of_update_keeps_later_remote_update() -> None:
    s = store(initial=[{"id": "a", "v": 0}])
    s.update({"id": "a", "v": "mine"}, 0.0)
    s.on_message(remote("update", {"id": "a", "v": "theirs"}, 1))
    s.fail("op1", "forbidden")
    # The design's naive restore would bring back v=0 and lose the remote update.
    assert s.data == [{"id": "a", "v": "theirs"}]


def test_rollback_keeps_later_local_op_on_same_item() -> None:
    s = store(initial=[{"id": "a", "v": 0}])
    s.update({"id": "a", "v": 1}, 0.0)
    s.update({"id": "a", "v": 2}, 0.0)
    s.fail("op1", "forbidden")
    assert s.data == [{"id": "a", "v": 2}]
    s.fail("op2", "forbidden")
    assert s.data == [{"id": "a", "v": 0}]
    assert not s.is_pending("a")


def test_rollback_of_update_after_remote_delete_keeps_item_deleted() -> None:
    s = store(initial=[{"id": "a", "v": 0}])
    s.update({"id": "a", "v": 1}, 0.0)
    s.on_message(remote("delete", {"id": "a"}, 1))
    assert s.data == [{"id": "a", "v": 1}]
    s.fail("op1", "forbidden")
    assert s.data == []


def test_tick_rolls_back_unacknowledged_ops_and_late_echo_still_applies() -> None:
    s = store(ack_timeout=5.0)
    frame = s.create({"id": "a"}, 0.0)
    s.create({"id": "b"}, 3.0)
    s.events()
    assert s.tick(4.9) == []
    assert s.tick(5.0) == ["op1"]
    assert s.events() == [RolledBack("op1", "create", "a", "timeout"), Deleted("a", {"id": "a"})]
    assert [i["id"] for i in s.data] == ["b"]
    # The server had stored it after all: its echo brings the item back.
    s.on_message(echo(frame, 1))
    assert [i["id"] for i in s.data] == ["a", "b"]
    with pytest.raises(ValueError, match="now"):
        s.tick(float("nan"))


def test_resend_frames_restart_timeouts_and_reuse_op_ids() -> None:
    s = store(ack_timeout=5.0)
    first = s.create({"id": "a"}, 0.0)
    second = s.update({"id": "a", "x": 1}, 1.0)
    frames = s.resend_frames(4.0)
    assert frames == [first, second]
    assert s.tick(8.0) == []
    assert s.tick(9.0) == ["op1", "op2"]


# ---------------------------------------------------------------- remote messages
def test_remote_create_update_delete_and_upsert() -> None:
    s = store()
    s.on_message(remote("create", {"id": "a", "v": 1}, 1, created_at=1.0))
    s.on_message(remote("update", {"id": "a", "v": 2}, 2, created_at=1.0))
    s.on_message(remote("update", {"id": "b", "v": 9}, 3, created_at=0.5))  # unknown id: upsert
    s.on_message(remote("create", {"id": "a", "v": 3}, 4, created_at=1.0))  # existing id: replace
    s.on_message(remote("delete", {"id": "zz"}, 5))  # unknown id: nothing to remove
    assert s.data == [{"id": "b", "v": 9}, {"id": "a", "v": 3}]
    s.on_message(remote("delete", {"id": "b"}, 6))
    assert s.events() == [
        Created({"id": "a", "v": 1}),
        Updated({"id": "a", "v": 2}, {"id": "a", "v": 1}),
        Created({"id": "b", "v": 9}),
        Updated({"id": "a", "v": 3}, {"id": "a", "v": 2}),
        Deleted("b", {"id": "b", "v": 9}),
    ]
    assert s.offset == 6


def test_replayed_offsets_are_ignored_and_new_epoch_restarts_offsets() -> None:
    s = store()
    s.on_message(remote("create", {"id": "a", "v": 1}, 1))
    s.on_message(remote("update", {"id": "a", "v": 2}, 2))
    s.on_message(remote("update", {"id": "a", "v": "old replay"}, 1))
    assert s.data == [{"id": "a", "v": 2}]
    s.on_message({**remote("update", {"id": "a", "v": "new epoch"}, 1), "epoch": "e2"})
    assert s.data == [{"id": "a", "v": "new epoch"}]
    assert (s.offset, s.epoch) == (1, "e2")


def test_article_style_messages_without_key_and_without_offset() -> None:
    s = store()
    s.on_message({"type": "message", "channel": CH, "data": {"type": "create", "item": {"id": "a"}}})
    assert s.data == [{"id": "a"}]
    s.on_message({"type": "message", "data": {"type": "delete", "item": {"id": "a"}, "opId": "x"}})
    assert s.data == []


def test_foreign_publish_without_created_at_is_ordered_by_server_timestamp() -> None:
    s = store()
    s.create({"id": "mine"}, 1500.0)
    frame = remote("create", {"id": "theirs"}, 1)
    del frame["data"]["createdAt"]
    frame["timestamp"] = 1_000_000  # ms -> 1000 s, before ours
    s.on_message(frame)
    assert [i["id"] for i in s.data] == ["theirs", "mine"]


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ({"type": "ack"}, "'message'"),
        ("message", "'message'"),
        ({"type": "message", "channel": "other", "data": None, "key": "a"}, "channel"),
        ({"type": "message", "data": None}, "'key'"),
        ({"type": "message", "data": "text", "key": "a"}, "data must be null"),
        ({"type": "message", "data": {"type": "create", "item": {"id": 5}}}, "'id'"),
        ({"type": "message", "data": {"type": "create", "item": {"id": "a"}}, "key": "b"}, "does not match"),
        ({"type": "message", "data": None, "key": "a", "offset": "3"}, "offset"),
    ],
)
def test_bad_messages_are_refused_without_changing_state(frame: Any, match: str) -> None:
    s = store(initial=[{"id": "a"}])
    with pytest.raises(StoreError, match=match):
        s.on_message(frame)
    assert s.data == [{"id": "a"}]
    assert s.offset == 0


def test_handle_frame_dispatch_and_bad_frames() -> None:
    s = store()
    assert s.on_frame({"type": "pong"}) is False
    assert s.on_frame(remote("create", {"id": "a"}, 1)) is True
    assert s.data == [{"id": "a"}]
    with pytest.raises(StoreError, match="mapping"):
        s.on_frame(["message"])  # type: ignore[arg-type]


# ---------------------------------------------------------------- snapshots
def test_load_snapshot_rebuilds_list_and_keeps_pending_on_top() -> None:
    s = store(initial=[{"id": "gone"}])
    mine = s.create({"id": "m"}, 50.0)
    stored = s.update({"id": "gone", "v": 1}, 60.0)  # the server stored this one
    s.events()
    state = {
        "x": remote("create", {"id": "x"}, 3, created_at=20.0),
        "y": remote("update", {"id": "y", "v": 2}, 7, created_at=10.0),
        "gone": echo(stored, 5),
    }
    s.load_snapshot(state, offset=9)
    assert [i["id"] for i in s.data] == ["gone", "y", "x", "m"]
    assert s.confirmed_data == [{"id": "gone", "v": 1}, {"id": "y", "v": 2}, {"id": "x"}]
    assert s.pending_ops == frozenset({mine["msgId"]})
    assert (s.offset, s.epoch) == (9, "e1")
    events = s.events()
    assert Confirmed(stored["msgId"], "update", "gone") in events
    assert Created({"id": "x"}) in events and Created({"id": "y", "v": 2}) in events
    # Messages at or below the snapshot offset are old news.
    s.on_message(remote("delete", {"id": "x"}, 8))
    assert s.get("x") == {"id": "x"}


def test_first_subscribe_history_with_state_loads_snapshot_and_confirms_own_old_ops() -> None:
    s = store()
    kept = s.create({"id": "a", "v": 1}, 1.0)
    superseded = s.create({"id": "b", "v": 1}, 2.0)
    refused_later = s.create({"id": "c"}, 3.0)
    b_now = remote("update", {"id": "b", "v": "theirs"}, 3, created_at=2.0)
    history = {
        "type": "history",
        "channel": CH,
        "epoch": "e1",
        "offset": 3,
        "latestEventId": "evt3",
        "state": {"a": echo(kept, 1), "b": b_now},
        "data": [echo(kept, 1), echo(superseded, 2), b_now],
    }
    assert s.on_frame(history)
    assert s.data == [{"id": "a", "v": 1}, {"id": "b", "v": "theirs"}, {"id": "c"}]
    assert s.pending_ops == frozenset({refused_later["msgId"]})
    confirmed = [e.op_id for e in s.events() if isinstance(e, Confirmed)]
    assert sorted(confirmed) == sorted([kept["msgId"], superseded["msgId"]])


def test_load_snapshot_order_and_default_offset() -> None:
    s = store()
    s.load_snapshot(
        {
            "b": remote("create", {"id": "b"}, 4, created_at=2.0),
            "a": remote("create", {"id": "a"}, 2, created_at=2.0),
            "c": remote("create", {"id": "c"}, 3, created_at=1.0),
        }
    )
    assert [i["id"] for i in s.data] == ["c", "a", "b"]
    assert s.offset == 4


def test_load_snapshot_refuses_bad_state_without_changing_anything() -> None:
    s = store(initial=[{"id": "a"}])
    with pytest.raises(StoreError, match="holds a frame for key"):
        s.load_snapshot({"a": remote("create", {"id": "b"}, 1)})
    with pytest.raises(StoreError, match="offset"):
        s.load_snapshot({}, offset=-1)
    with pytest.raises(StoreError, match="snapshot state"):
        s.load_snapshot([])  # type: ignore[arg-type]
    assert s.data == [{"id": "a"}]


def test_history_frames() -> None:
    s = store()
    s.on_frame(remote("create", {"id": "a"}, 1))
    recovered = {
        "type": "history",
        "channel": CH,
        "recovered": True,
        "data": [
            remote("create", {"id": "c"}, 3, created_at=3.0),
            remote("create", {"id": "b"}, 2, created_at=2.0),
        ],
    }
    assert s.on_frame(recovered)
    assert [i["id"] for i in s.data] == ["a", "b", "c"]
    e2 = {"epoch": "e2"}
    lost = {
        "type": "history",
        "channel": CH,
        "recovered": False,
        "epoch": "e2",
        "offset": 10,
        "state": {"z": remote("create", {"id": "z"}, 9, **e2)},
        "data": [
            remote("delete", {"id": "z"}, 12, **e2),
            remote("create", {"id": "late"}, 11, created_at=5.0, **e2),
            remote("create", {"id": "z"}, 9, **e2),  # already in the snapshot: ignored
        ],
    }
    s.on_frame(lost)
    assert [i["id"] for i in s.data] == ["late"]
    assert (s.offset, s.epoch) == (12, "e2")
    with pytest.raises(StoreError, match="'state'"):
        s.on_frame({"type": "history", "recovered": False, "data": []})
    with pytest.raises(StoreError, match="'state'"):
        s.on_frame({"type": "history", "state": [], "data": []})
    with pytest.raises(StoreError, match="'data'"):
        s.on_frame({"type": "history", "data": [1]})


# ---------------------------------------------------------------- properties
class KeyedServer:
    """The gateway's keyed channel state: latest frame per key, ``data: None`` deletes."""

    def __init__(self) -> None:
        self.offset = 0
        self.state: dict[str, dict[str, Any]] = {}
        self.seen: set[str] = set()
        self.events: list[dict[str, Any]] = []

    def publish(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        if frame["msgId"] in self.seen:
            return None
        self.seen.add(frame["msgId"])
        self.offset += 1
        message = echo(frame, self.offset)
        self.events.append(message)
        if frame["data"] is None:
            self.state.pop(frame["key"], None)
        else:
            self.state[frame["key"]] = message
        return message


class Client:
    def __init__(self, name: str) -> None:
        self.store = OptimisticStore(CH, ack_timeout=3.0, new_id=ids(name))
        self.outbox: deque[dict[str, Any]] = deque()
        self.inbox: deque[dict[str, Any]] = deque()
        self.mirror: dict[str, dict[str, Any]] = {}

    def deliver_one(self) -> None:
        self.store.on_frame(self.inbox.popleft())
        self.drain()

    def drain(self) -> None:
        for event in self.store.events():
            apply_event(self.mirror, event)


def apply_event(mirror: dict[str, dict[str, Any]], event: StoreEvent) -> None:
    if isinstance(event, (Created, Updated)):
        mirror[event.item["id"]] = event.item
    elif isinstance(event, Deleted):
        assert mirror.pop(event.item_id) == event.previous


def serve_one(server: KeyedServer, clients: list[Client], sender: Client, rnd: random.Random) -> None:
    frame = sender.outbox.popleft()
    if frame["msgId"] not in server.seen and rnd.random() < 0.25:
        sender.inbox.append({"type": "error", "id": frame["msgId"], "code": "forbidden", "reason": "no"})
        return
    duplicate = frame["msgId"] in server.seen
    message = server.publish(frame)
    ack: dict[str, Any] = {"type": "ack", "id": frame["msgId"]}
    if duplicate:
        ack["duplicate"] = True
    ack_first = rnd.random() < 0.5
    if ack_first:
        sender.inbox.append(ack)
    if message is not None:
        for client in clients:
            client.inbox.append(message)
    if not ack_first:
        sender.inbox.append(ack)


STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("op"),
            st.integers(0, 1),
            st.sampled_from(["create", "update", "delete"]),
            st.sampled_from("abc"),
        ),
        st.tuples(st.just("serve"), st.integers(0, 1)),
        st.tuples(st.just("deliver"), st.integers(0, 1)),
        st.tuples(st.just("tick"), st.integers(0, 1)),
        st.tuples(st.just("resubscribe"), st.integers(0, 1)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, rnd=st.randoms(use_true_random=False))
def test_property_two_clients_converge_to_server_list(
    steps: list[tuple[Any, ...]], rnd: random.Random
) -> None:
    """Random local ops on two clients, random refusals, ack/echo order, timeouts and
    resubscribes: at the end both lists equal the server's (order included) and the event
    stream of each client reproduces its list."""
    server = KeyedServer()
    clients = [Client("a-"), Client("b-")]
    now = 0.0
    counter = itertools.count()
    for step in steps:
        kind, who = step[0], clients[step[1]]
        now += 1.0
        if kind == "op":
            _, _, op, item_id = step
            exists = who.store.get(item_id) is not None
            value = next(counter)
            if op == "create" and not exists:
                who.outbox.append(who.store.create({"id": item_id, "v": value}, now))
            elif op == "update" and exists:
                who.outbox.append(who.store.update({"id": item_id, "v": value}, now))
            elif op == "delete" and exists:
                who.outbox.append(who.store.delete(item_id, now))
            else:
                with pytest.raises((ValueError, KeyError)):
                    if op == "create":
                        who.store.create({"id": item_id}, now)
                    elif op == "update":
                        who.store.update({"id": item_id}, now)
                    else:
                        who.store.delete(item_id, now)
        elif kind == "serve" and who.outbox:
            serve_one(server, clients, who, rnd)
        elif kind == "deliver" and who.inbox:
            who.deliver_one()
        elif kind == "tick":
            who.store.tick(now + rnd.choice([0.0, 5.0]))
        elif kind == "resubscribe":
            # Connection lost: unsent frames and undelivered frames are gone; rebuild.
            who.outbox.clear()
            who.inbox.clear()
            history = {
                "type": "history",
                "channel": CH,
                "recovered": False,
                "epoch": "e1",
                "offset": server.offset,
                "state": dict(server.state),
                "data": server.events[-rnd.randint(0, 4) :] if server.events else [],
            }
            who.store.on_frame(history)
            who.outbox.extend(who.store.resend_frames(now))
        who.drain()

    # Quiesce: serve and deliver everything, then nothing may be pending.
    while any(c.outbox or c.inbox for c in clients):
        for client in clients:
            while client.outbox:
                serve_one(server, clients, client, rnd)
            while client.inbox:
                client.deliver_one()
    expected = OptimisticStore(CH)
    expected.load_snapshot(server.state)
    for client in clients:
        assert not client.store.has_pending_ops
        assert client.store.data == expected.data
        assert client.store.confirmed_data == expected.data
        assert client.mirror == {i["id"]: i for i in client.store.data}


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["create", "update", "delete"]), st.sampled_from("abcd"), st.booleans()),
        max_size=20,
    ),
    remote_ops=st.lists(st.tuples(st.sampled_from("abcd"), st.one_of(st.none(), st.integers())), max_size=6),
    rnd=st.randoms(use_true_random=False),
)
def test_property_outcomes_equal_applying_only_confirmed_ops(
    ops: list[tuple[str, str, bool]], remote_ops: list[tuple[str, int | None]], rnd: random.Random
) -> None:
    """Ops confirmed (acks in send order) or refused (in any order), with remote writes to
    other items meanwhile: the list equals the server state with only the confirmed ops
    applied, and refusing everything restores the initial list exactly."""
    initial = [{"id": "a", "v": "init"}, {"id": "b", "v": "init"}]
    s = store(initial=initial)
    frames = []
    for kind, item_id, _ in ops:
        exists = s.get(item_id) is not None
        if kind == "create" and not exists:
            frames.append(s.create({"id": item_id, "v": len(frames)}, float(len(frames) + 10)))
        elif kind == "update" and exists:
            frames.append(s.update({"id": item_id, "v": len(frames)}, 0.0))
        elif kind == "delete" and exists:
            frames.append(s.delete(item_id, 0.0))
    outcomes = {f["msgId"]: accepted for f, (_, _, accepted) in zip(frames, ops, strict=False)}
    # Remote writes to items no local op touches: "e".."h" never collide with local ids.
    server = {i["id"]: (dict(i), float(n)) for n, i in enumerate(initial)}
    for offset, (item_id, value) in enumerate(remote_ops, start=1):
        rid = chr(ord(item_id) + 4)
        kind = "delete" if value is None else "update"
        s.on_message(remote(kind, {"id": rid, "v": value}, offset, created_at=100.0))
        if value is None:
            server.pop(rid, None)
        else:
            server[rid] = ({"id": rid, "v": value}, 100.0)
    # The server applies accepted ops in send order; outcomes reach us in any order.
    for frame in frames:
        if outcomes[frame["msgId"]]:
            if frame["data"] is None:
                server.pop(frame["key"], None)
            else:
                server[frame["key"]] = (frame["data"]["item"], frame["data"]["createdAt"])
    # Acks arrive in send order on one socket; refusals interleave anywhere.
    acks = [f["msgId"] for f in frames if outcomes[f["msgId"]]]
    errors = [f["msgId"] for f in frames if not outcomes[f["msgId"]]]
    rnd.shuffle(errors)
    while acks or errors:
        if errors and (not acks or rnd.random() < 0.5):
            assert s.fail(errors.pop(), "forbidden")
        else:
            assert s.confirm(acks.pop(0))
    assert not s.has_pending_ops
    expected = [item for _, (item, _) in sorted(server.items(), key=lambda kv: (kv[1][1], kv[0]))]
    assert s.data == expected
    assert s.confirmed_data == expected


def test_frames_pass_the_shared_protocol_validation() -> None:
    from rtwidgets.protocol import encode, parse_client_frame

    s = OptimisticStore(CH)  # default uuid op ids
    frames = [s.create({"id": "a", "n": 1}, 1.0), s.update({"id": "a", "n": 2}, 2.0), s.delete("a", 3.0)]
    for frame in frames:
        assert parse_client_frame(encode(frame)) == frame


def test_forget_drops_a_confirmed_item_locally_and_a_replay_does_not_bring_it_back() -> None:
    s = store()
    s.on_message(remote("create", {"id": "old"}, 1))
    s.on_message(remote("create", {"id": "new"}, 2))
    s.events()
    assert s.forget("old") and [i["id"] for i in s.data] == ["new"]
    assert s.events() == []  # local only: nothing to show or publish
    s.on_message(remote("create", {"id": "old"}, 1))  # a replay of offset 1
    assert [i["id"] for i in s.data] == ["new"]
    assert not s.forget("old") and not s.forget("missing")
    frame = s.update({"id": "new", "n": 2}, 1.0)
    assert not s.forget("new")  # a pending op touches it: kept
    s.on_message(echo(frame, 3))
    assert s.forget("new") and s.data == []
