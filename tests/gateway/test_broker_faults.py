"""Broker failures the gateway must contain: a subscribe that fails partway is undone
completely, a leave is broadcast once, and only the state bound is answered ``state_full``.

The broker is a real :class:`MemoryBroker` with injected faults (a failing call may first
do its work, like a Redis command whose reply was lost); clients are real WebSockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import rtwidgets.gateway.brokers.redis as redis_broker
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers import base, memory
from rtwidgets.gateway.brokers.base import BrokerUnavailable, StateFull
from rtwidgets.gateway.brokers.memory import MemoryBroker
from tests._support.waiting import eventually

TIMEOUT = 10.0  # generous: a condition that does not hold within this is a failure, not slowness

# Clients are tests/conftest.py's RawClient (not imported: tests/redis has its own conftest).
RawClient = Any


class FaultyBroker(MemoryBroker):
    """Fails the next call of a method when told to, before or after doing its work."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[str, tuple[BaseException, bool]] = {}
        self.during_fault: Callable[[], Awaitable[None]] | None = None
        self.detached: list[str] = []

    def fail_next(self, method: str, exc: BaseException, *, after_work: bool = False) -> None:
        self.faults[method] = (exc, after_work)

    async def _call(self, method: str, work: Callable[[], Awaitable[Any]]) -> Any:
        fault = self.faults.pop(method, None)
        if fault is None:
            return await work()
        exc, after_work = fault
        if after_work:
            await work()
        if self.during_fault is not None:
            await self.during_fault()
        raise exc

    async def presence_set(self, channel: str, member: dict[str, Any]) -> None:
        await self._call("presence_set", lambda: super(FaultyBroker, self).presence_set(channel, member))

    async def presence_members(self, channel: str) -> list[dict[str, Any]]:
        return await self._call(
            "presence_members", lambda: super(FaultyBroker, self).presence_members(channel)
        )

    async def broadcast(self, channel: str, frame: dict[str, Any]) -> None:
        await self._call("broadcast", lambda: super(FaultyBroker, self).broadcast(channel, frame))

    async def publish(self, channel: str, frame: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return await self._call(
            "publish", lambda: super(FaultyBroker, self).publish(channel, frame, **kwargs)
        )

    async def detach(self, channel: str) -> None:
        self.detached.append(channel)
        await super().detach(channel)


async def settle(client: RawClient, channel: str) -> None:
    """Publish a marker and wait for it: every frame fanned out before it has arrived."""
    ack = await client.publish(channel, "marker")
    await client.take(lambda f: f.get("type") == "message" and f.get("eventId") == ack["eventId"])


def presence_frames(client: RawClient, kind: str, client_id: str) -> list[dict[str, Any]]:
    return [f for f in client.frames if f["type"] == kind and f["member"]["clientId"] == client_id]


@pytest.fixture
async def faulty(make_gateway) -> tuple[Gateway, FaultyBroker]:
    broker = FaultyBroker()
    return await make_gateway(broker=broker), broker


# ---------------------------------------------------------------- presence leave once


async def test_no_second_leave_when_the_member_was_already_removed(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    await a.subscribe("room", presence=True)
    await b.subscribe("room", presence=True)
    # Someone else removes alice first and says so, as a Redis sweeper does for a gateway
    # it believes dead.
    removed = await gateway.broker.presence_remove("room", a.client_id)
    assert removed is not None
    await gateway.broker.broadcast("room", {"type": "presence_leave", "channel": "room", "member": removed})
    await a.ok({"type": "unsubscribe", "channel": "room"})
    await settle(b, "room")
    assert len(presence_frames(b, "presence_leave", a.client_id)) == 1
    # A member still present is announced as before.
    c = await connect(gateway, "carol")
    await c.subscribe("room", presence=True)
    await c.ok({"type": "unsubscribe", "channel": "room"})
    await settle(b, "room")
    assert len(presence_frames(b, "presence_leave", c.client_id)) == 1


# ---------------------------------------------------------------- StateFull


def test_state_full_lives_in_base_and_is_shared() -> None:
    assert memory.StateFull is base.StateFull is StateFull
    assert redis_broker.StateFull is StateFull
    assert issubclass(StateFull, ValueError)  # older callers caught it as a ValueError


async def test_only_state_full_is_answered_state_full(faulty, connect) -> None:
    gw, broker = faulty
    a = await connect(gw, "alice")
    broker.fail_next("publish", StateFull("channel 'c' already holds 3 state keys"))
    err, _ = await a.request({"type": "publish", "channel": "c", "data": 1, "key": "k"})
    assert err["type"] == "error" and err["code"] == "state_full" and "3 state keys" in err["reason"]
    # Any other ValueError is a broker bug, not a full state.
    broker.fail_next("publish", ValueError("simulated bug"))
    err, _ = await a.request({"type": "publish", "channel": "c", "data": 1})
    assert err["type"] == "error" and err["code"] == "internal"
    await a.publish("c", "fine")


# ---------------------------------------------------------------- all-or-nothing subscribe


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RuntimeError("simulated broker bug"), "internal"),
        (BrokerUnavailable("simulated outage"), "unavailable"),
    ],
)
async def test_failure_after_presence_join_undoes_the_subscribe(
    faulty, connect, exc: BaseException, code: str
) -> None:
    gw, broker = faulty
    a = await connect(gw, "alice")
    b = await connect(gw, "bob")
    await b.subscribe("room", presence=True)
    broker.fail_next("presence_members", exc)
    err, before = await a.request({"type": "subscribe", "channel": "room", "options": {"presence": True}})
    assert err["type"] == "error" and err["code"] == code and err["channel"] == "room"
    assert before == []  # nothing of the failed subscription reached the client
    # Not subscribed and not present; the others saw the join taken back.
    assert [m["clientId"] for m in await broker.presence_members("room")] == [b.client_id]
    await settle(b, "room")
    assert len(presence_frames(b, "presence_join", a.client_id)) == 1
    assert len(presence_frames(b, "presence_leave", a.client_id)) == 1
    assert not any(f["type"] == "message" for f in a.frames)
    err, _ = await a.request({"type": "unsubscribe", "channel": "room"})
    assert err["code"] == "not_subscribed"
    assert gw.stats()["subscriptions"] == 1
    # A retry succeeds and joins once.
    _, before = await a.subscribe("room", presence=True)
    sync = next(f for f in before if f["type"] == "presence_sync")
    assert [m["clientId"] for m in sync["members"]] == [b.client_id, a.client_id]


async def test_failed_subscribe_of_the_only_subscriber_detaches(faulty, connect) -> None:
    gw, broker = faulty
    a = await connect(gw, "alice")
    broker.fail_next("presence_members", RuntimeError("simulated broker bug"))
    err, _ = await a.request({"type": "subscribe", "channel": "solo", "options": {"presence": True}})
    assert err["code"] == "internal"
    await eventually(lambda: "solo" in broker.detached, "the channel to be detached", TIMEOUT, interval=0.01)
    assert gw.stats()["channels"] == 0 and gw.stats()["subscriptions"] == 0
    assert await broker.presence_members("solo") == []


async def test_failure_storing_presence_removes_it_without_a_leave(faulty, connect) -> None:
    gw, broker = faulty
    a = await connect(gw, "alice")
    b = await connect(gw, "bob")
    await b.subscribe("room", presence=True)
    # Stored, but the reply was lost: the join was never broadcast, so no leave is either.
    broker.fail_next("presence_set", BrokerUnavailable("simulated lost reply"), after_work=True)
    err, _ = await a.request({"type": "subscribe", "channel": "room", "options": {"presence": True}})
    assert err["code"] == "unavailable"
    assert [m["clientId"] for m in await broker.presence_members("room")] == [b.client_id]
    await settle(b, "room")
    assert presence_frames(b, "presence_join", a.client_id) == []
    assert presence_frames(b, "presence_leave", a.client_id) == []


async def test_failed_resubscribe_keeps_the_earlier_subscription_whole(faulty, connect) -> None:
    gw, broker = faulty
    a = await connect(gw, "alice")
    b = await connect(gw, "bob")
    await a.subscribe("room")
    await b.subscribe("room", presence=True)

    async def publish_meanwhile() -> None:
        # A message published while the re-subscribe is catching up (a's frames are parked).
        await broker.publish("room", {"type": "message", "channel": "room", "data": "meanwhile"})

    broker.during_fault = publish_meanwhile
    broker.fail_next("presence_members", RuntimeError("simulated broker bug"))
    err, _ = await a.request({"type": "subscribe", "channel": "room", "options": {"presence": True}})
    assert err["code"] == "internal"
    # Still subscribed as before: nothing parked is lost, and live frames keep coming.
    assert (await a.take(lambda f: f.get("type") == "message"))["data"] == "meanwhile"
    await b.publish("room", "after")
    assert (await a.take(lambda f: f.get("type") == "message"))["data"] == "after"
    # The presence membership the failed call added was taken back.
    assert [m["clientId"] for m in await broker.presence_members("room")] == [b.client_id]
    await settle(b, "room")
    assert len(presence_frames(b, "presence_leave", a.client_id)) == 1
    await a.ok({"type": "unsubscribe", "channel": "room"})
