"""Presence: join (with sync), update, leave on unsubscribe and on disconnect, multi-device."""

from __future__ import annotations

import asyncio
from typing import Any

from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.memory import MemoryBroker


def of_type(mtype: str):
    return lambda f: f.get("type") == mtype


async def test_join_sync_update_leave(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    _, before = await a.subscribe("room", presence=True, presenceData={"color": "red"})
    # The joiner sees its own join (as in the design: docs/design.md#presence) and then a full sync.
    assert [f["type"] for f in before] == ["presence_join", "presence_sync"]
    assert before[0]["member"]["clientId"] == a.client_id
    assert before[1]["members"] == [before[0]["member"]]
    assert before[0]["member"]["data"] == {"color": "red"}

    _, before_b = await b.subscribe("room", presence=True)
    sync_b = next(f for f in before_b if f["type"] == "presence_sync")
    assert [m["userId"] for m in sync_b["members"]] == ["alice", "bob"]
    join_b = await a.take(lambda f: f["type"] == "presence_join" and f["member"]["userId"] == "bob")
    assert join_b["channel"] == "room" and join_b["member"]["data"] == {}
    assert isinstance(join_b["member"]["joinedAt"], int)

    await b.ok({"type": "presence_update", "channel": "room", "data": {"cursor": [1, 2]}})
    for client in (a, b):
        upd = await client.take(of_type("presence_update"))
        assert upd["member"]["clientId"] == b.client_id and upd["member"]["data"] == {"cursor": [1, 2]}
        assert upd["member"]["joinedAt"] == join_b["member"]["joinedAt"]  # join time is kept

    await b.ok({"type": "unsubscribe", "channel": "room"})
    leave = await a.take(of_type("presence_leave"))
    assert leave["member"]["clientId"] == b.client_id and leave["member"]["userId"] == "bob"
    c = await connect(gateway, "carol")
    _, before_c = await c.subscribe("room", presence=True)
    members = next(f for f in before_c if f["type"] == "presence_sync")["members"]
    assert [m["userId"] for m in members] == ["alice", "carol"]


async def test_leave_is_broadcast_on_disconnect(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    await a.subscribe("room", presence=True)
    await b.subscribe("room", presence=True)
    await b.close()
    leave = await a.take(of_type("presence_leave"))
    assert leave["member"]["clientId"] == b.client_id
    _, before = await a.subscribe("room", presence=True)  # idempotent re-subscribe re-sends the sync
    members = next(f for f in before if f["type"] == "presence_sync")["members"]
    assert [m["clientId"] for m in members] == [a.client_id]


async def test_one_user_two_devices_are_two_members(gateway: Gateway, connect) -> None:
    laptop = await connect(gateway, "alice")
    phone = await connect(gateway, "alice")
    watcher = await connect(gateway, "bob")
    await watcher.subscribe("room", presence=True)
    await laptop.subscribe("room", presence=True)
    await phone.subscribe("room", presence=True)
    joins = [await watcher.take(lambda f: f["type"] == "presence_join" and f["member"]["userId"] == "alice")]
    joins.append(
        await watcher.take(lambda f: f["type"] == "presence_join" and f["member"]["userId"] == "alice")
    )
    assert {j["member"]["clientId"] for j in joins} == {laptop.client_id, phone.client_id}
    await phone.close()
    leave = await watcher.take(of_type("presence_leave"))
    assert leave["member"]["clientId"] == phone.client_id
    _, before = await watcher.subscribe("room", presence=True)
    members = next(f for f in before if f["type"] == "presence_sync")["members"]
    assert {m["clientId"] for m in members} == {watcher.client_id, laptop.client_id}


async def test_presence_errors(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice", presence=["public:*"])
    err, _ = await a.request({"type": "presence_update", "channel": "room", "data": {}})
    assert err["code"] == "not_subscribed"
    await a.subscribe("room")
    err, _ = await a.request({"type": "presence_update", "channel": "room", "data": {}})
    assert err["code"] == "presence_disabled" and err["channel"] == "room"
    err, _ = await a.request({"type": "subscribe", "channel": "other", "options": {"presence": True}})
    assert err["code"] == "forbidden"
    await a.subscribe("public:lobby", presence=True)
    too_big = {"blob": "x" * (gateway.config.max_presence_bytes + 1)}
    err, _ = await a.request({"type": "presence_update", "channel": "public:lobby", "data": too_big})
    assert err["code"] == "too_large"
    err, _ = await a.request(
        {"type": "subscribe", "channel": "public:two", "options": {"presence": True, "presenceData": too_big}}
    )
    assert err["code"] == "too_large"
    # The refused update changed nothing: a fresh member list still has empty data.
    _, before = await a.subscribe("public:lobby", presence=True)
    members = next(f for f in before if f["type"] == "presence_sync")["members"]
    assert members[0]["data"] == {}


async def test_resubscribe_with_new_presence_data_is_an_update(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    await a.subscribe("room", presence=True, presenceData={"status": "here"})
    await b.subscribe("room", presence=True)
    _, before = await a.subscribe("room", presence=True, presenceData={"status": "away"})
    own_joins = [f for f in before if f["type"] == "presence_join" and f["member"]["clientId"] == a.client_id]
    assert own_joins == []  # still the same member, not a new join
    upd = await b.take(of_type("presence_update"))
    assert upd["member"]["clientId"] == a.client_id and upd["member"]["data"] == {"status": "away"}
    sync = next(f for f in before if f["type"] == "presence_sync")
    assert [m["data"] for m in sync["members"]] == [{"status": "away"}, {}]


class _SlowMembersBroker(MemoryBroker):
    """Reads the member list, then lets other tasks run before returning it: like a Redis
    reply still in flight while newer pub/sub frames arrive on the other connection."""

    def __init__(self) -> None:
        super().__init__()
        self.slow = False
        self.read_done = asyncio.Event()
        self.release = asyncio.Event()

    async def presence_members(self, channel: str) -> list[dict[str, Any]]:
        members = await super().presence_members(channel)
        if self.slow:
            self.read_done.set()
            await self.release.wait()
        return members


async def test_newer_update_during_the_member_read_is_not_overwritten(make_gateway, connect) -> None:
    broker = _SlowMembersBroker()
    gw = await make_gateway(broker=broker)
    a = await connect(gw, "alice")
    b = await connect(gw, "bob")
    await a.subscribe("room", presence=True, presenceData={"v": 1})
    broker.slow = True
    joining = asyncio.ensure_future(b.subscribe("room", presence=True))
    await asyncio.wait_for(broker.read_done.wait(), 10)
    # Alice changes her data after bob's member list was read, before it reached bob.
    broker.slow = False
    await a.ok({"type": "presence_update", "channel": "room", "data": {"v": 2}})
    broker.release.set()
    _, before = await asyncio.wait_for(joining, 10)
    kinds = [f["type"] for f in before]
    # Own join first (documented order), then the (older) list, then the newer update.
    assert kinds.index("presence_join") < kinds.index("presence_sync") < kinds.index("presence_update")
    alice: dict[str, Any] = {}
    for frame in before:  # replay what bob's client applies, in order
        if frame["type"] == "presence_sync":
            alice = next(m for m in frame["members"] if m["userId"] == "alice")
        elif frame["type"] in ("presence_join", "presence_update") and frame["member"]["userId"] == "alice":
            alice = frame["member"]
    assert alice["data"] == {"v": 2}
