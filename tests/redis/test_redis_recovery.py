"""RedisBroker through connection loss and an empty Redis restart (real redis-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtwidgets.chaos import ChaosProxy
from rtwidgets.gateway.brokers.base import BrokerUnavailable
from rtwidgets.gateway.brokers.redis import RedisBroker
from tests._support.broker_listener import Collector, msg
from tests._support.redis_server import RedisServer
from tests._support.waiting import eventually

pytestmark = pytest.mark.redis

Pair = list[tuple[RedisBroker, Collector]]


@pytest.fixture
async def pair(restartable_redis: RedisServer, prefix: str) -> AsyncIterator[Pair]:
    out: list[tuple[RedisBroker, Collector]] = []
    for _ in range(2):
        broker = RedisBroker(restartable_redis.url, key_prefix=prefix, presence_ttl=3.0, connect_timeout=1.0)
        listener = Collector()
        broker.set_listener(listener)
        await broker.start()
        await broker.attach("room")
        out.append((broker, listener))
    yield out
    for broker, _ in out:
        await broker.close()


async def publish_when_back(broker: RedisBroker, frame: dict[str, Any]) -> dict[str, Any]:
    """Retry while Redis is still coming back; every failure must be BrokerUnavailable."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await broker.publish("room", frame)
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_redis_restart_reconnects_and_changes_epoch(restartable_redis: RedisServer, pair: Pair) -> None:
    (a, la), (b, lb) = pair
    await a.presence_set("room", {"clientId": "a1", "userId": "ann"})
    before = await a.publish("room", msg("before"))
    await lb.wait(lambda: len(lb.of("room", "message")) == 1, "first frame")

    restartable_redis.stop()
    with pytest.raises(BrokerUnavailable, match="unavailable"):
        await asyncio.wait_for(a.publish("room", msg("while-down")), 10)
    await eventually(lambda: not a.connected and not b.connected, "readers to notice the outage")

    restartable_redis.start()
    after = await publish_when_back(a, msg("after"))
    assert after["epoch"] != before["epoch"] and after["offset"] == 1
    # both readers resubscribed on their own and deliver again
    await eventually(lambda: a.connected and b.connected, "readers to reconnect")
    again = await a.publish("room", msg("again"))
    for listener in (la, lb):
        await listener.wait(
            lambda listener=listener: any(f["data"] == "again" for f in listener.of("room", "message")),
            "again",
        )
    assert a.stats()["reconnects"] >= 1 and b.stats()["reconnects"] >= 1

    # a client resuming from before the restart learns its history is gone
    snap = await b.snapshot(
        "room", last_event_id=before["id"], epoch=before["epoch"], history=10, want_state=False
    )
    assert snap.recovered is False and snap.epoch == again["epoch"]
    datas = [e["data"] for e in snap.events]
    assert datas[-1] == "again" and "before" not in datas
    assert snap.state == {}
    # without the epoch the old id is not in the new stream either
    snap = await b.snapshot("room", last_event_id=before["id"], epoch=None, history=1, want_state=False)
    assert snap.recovered is False

    # the gateway's own presence member is put back by its liveness refresh
    members = await eventually(lambda: b.presence_members("room"), "presence restored")
    assert [m["clientId"] for m in members] == ["a1"]


async def test_pubsub_drop_is_refilled_from_history(restartable_redis: RedisServer, pair: Pair) -> None:
    (a, _), (b, lb) = pair
    await a.publish("room", msg(0))
    await lb.wait(lambda: len(lb.of("room")) == 1, "first frame")
    # drop every pub/sub connection while Redis (and its data) stays up
    assert restartable_redis.command("CLIENT", "KILL", "TYPE", "pubsub").startswith(b":")
    for i in range(1, 30):
        await a.publish("room", msg(i))
    await lb.wait(lambda: len(lb.of("room", "message")) >= 30, "30 frames")
    await a.publish("room", msg("end"))
    await lb.wait(lambda: lb.of("room", "message")[-1]["data"] == "end", "end marker")
    got = lb.of("room", "message")
    assert [f["data"] for f in got] == [*range(30), "end"]  # nothing lost, nothing twice, in order
    assert [f["offset"] for f in got] == list(range(1, 32))
    assert b.stats()["reconnects"] >= 1


async def test_attach_while_down_raises(restartable_redis: RedisServer, pair: Pair) -> None:
    (a, _), _ = pair
    restartable_redis.stop()
    await eventually(lambda: not a.connected, "reader to notice the outage")
    with pytest.raises(BrokerUnavailable):
        await a.attach("other")
    for call in (
        a.snapshot("room", last_event_id=None, epoch=None, history=1, want_state=True),
        a.presence_members("room"),
        a.broadcast("room", {"type": "x"}),
    ):
        with pytest.raises(BrokerUnavailable):
            await asyncio.wait_for(call, 10)
    restartable_redis.start()
    await eventually(lambda: a.connected, "reconnect")
    await a.attach("other")
    assert "other" in a._attached


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[ChaosProxy]:
    p = await ChaosProxy(redis_server.port).start_async()
    yield p
    await p.stop_async()


def redis_url(proxy: ChaosProxy) -> str:
    host, port = proxy.address
    return f"redis://{host}:{port}/0"


def outage(proxy: ChaosProxy) -> None:
    """The network to Redis goes down: open connections reset, new ones refused (Redis keeps its data)."""
    proxy.drop_new(True)  # first, so a reconnect racing the cut is refused too
    proxy.cut()


async def test_network_cut_refills_gap_and_removes_stale_member(
    redis_server: RedisServer, proxy: ChaosProxy, prefix: str
) -> None:
    cut_off = RedisBroker(redis_url(proxy), key_prefix=prefix, presence_ttl=0.9, connect_timeout=1.0)
    other = RedisBroker(redis_server.url, key_prefix=prefix, presence_ttl=30)
    lc, lo = Collector(), Collector()
    cut_off.set_listener(lc)
    other.set_listener(lo)
    await cut_off.start()
    await other.start()
    try:
        for b in (cut_off, other):
            await b.attach("room")
        await other.publish("quiet", msg("before attach"))
        await cut_off.attach("quiet")  # nothing delivered on it before the cut
        await cut_off.presence_set("room", {"clientId": "c1", "userId": "cat"})
        await other.publish("room", msg(0))
        await lc.wait(lambda: len(lc.of("room", "message")) == 1, "first frame")

        outage(proxy)
        await eventually(lambda: not cut_off.connected, "reader to notice the cut")
        for i in range(1, 6):  # published while cut_off cannot hear them
            await other.publish("room", msg(i))
        await other.publish("quiet", msg("q1"))
        await other.publish("quiet", msg("q2"))
        with pytest.raises(BrokerUnavailable):  # the client left during the cut
            await cut_off.presence_remove("room", "c1")
        with pytest.raises(BrokerUnavailable):
            await cut_off.publish("room", msg("lost?"))

        proxy.drop_new(False)
        await lc.wait(lambda: len(lc.of("room", "message")) == 6, "refilled frames")
        assert [f["data"] for f in lc.of("room", "message")] == list(range(6))  # in order, none twice
        await lc.wait(lambda: len(lc.of("quiet")) == 2, "refilled quiet channel")
        assert [f["data"] for f in lc.of("quiet")] == ["q1", "q2"]  # not the one before attach
        # housekeeping finished the removal and told everyone
        await lo.wait(lambda: len(lo.of("room", "presence_leave")) == 1, "deferred leave")
        assert lo.of("room", "presence_leave")[0]["member"]["clientId"] == "c1"
        assert await other.presence_members("room") == []
        await other.publish("room", msg("after"))
        await lc.wait(lambda: lc.of("room", "message")[-1]["data"] == "after", "live again")
        assert [f["offset"] for f in lc.of("room", "message")] == list(range(1, 8))
    finally:
        await cut_off.close()
        await other.close()


async def test_idempotent_reads_retry_once_on_dead_pooled_connections(proxy: ChaosProxy, prefix: str) -> None:
    # Right after a Redis restart, pooled sockets can look alive and die on first use. Two such
    # failures in a row used to exhaust redis-py's single retry: snapshot raised unavailable.
    broker = RedisBroker(redis_url(proxy), key_prefix=prefix, presence_ttl=30, connect_timeout=1.0)
    await broker.start()
    try:
        stored = await broker.publish("room", msg("kept"))
        await broker.presence_set("room", {"clientId": "c1", "userId": "cat"})
        snapshot_sha = broker._snapshot_script.sha.encode()

        proxy.break_on(snapshot_sha, 2)
        snap = await broker.snapshot("room", last_event_id=None, epoch=None, history=5, want_state=False)
        assert proxy.stats().connections_broken == 2
        assert [e["id"] for e in snap.events] == [stored["id"]] and snap.epoch == stored["epoch"]

        proxy.break_on(b"HGETALL", 2)
        members = await broker.presence_members("room")
        assert proxy.stats().connections_broken == 4
        assert [m["clientId"] for m in members] == ["c1"]

        # Bounded: one retry only, then the caller hears unavailable.
        proxy.break_on(snapshot_sha, 100)
        with pytest.raises(BrokerUnavailable, match="snapshot"):
            await broker.snapshot("room", last_event_id=None, epoch=None, history=5, want_state=False)
        proxy.heal()  # disarms break_on

        # A publish with a msgId whose connection dies is sent once more (the script dedupes it).
        publish_sha = broker._publish_script.sha.encode()
        broken = proxy.stats().connections_broken
        proxy.break_on(publish_sha, 1)
        again = await broker.publish("room", msg("again"), msg_id="m-again")
        assert proxy.stats().connections_broken == broken + 1 and again["offset"] == stored["offset"] + 1

        # Without a msgId it is not: the lost command may have been stored, a resend could store
        # it twice. The caller hears unavailable (and can resend with a msgId).
        proxy.break_on(publish_sha, 1)
        with pytest.raises(BrokerUnavailable, match="publish"):
            await broker.publish("room", msg("maybe"))
        # Twice in a row, even with a msgId: unavailable after the one retry.
        proxy.break_on(publish_sha, 2)
        with pytest.raises(BrokerUnavailable, match="publish"):
            await broker.publish("room", msg("refused"), msg_id="m-refused")
        snap = await broker.snapshot("room", last_event_id=None, epoch=None, history=5, want_state=False)
        assert [e["data"] for e in snap.events] == ["kept", "again"]  # nothing half-stored, nothing twice
    finally:
        proxy.heal()
        await broker.close()
