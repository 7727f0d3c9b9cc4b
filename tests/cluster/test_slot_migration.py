"""A channel's slot moves to another master while messages flow: every subscriber keeps
receiving, each message exactly once, in order, in one epoch.

The slot is moved the way ``redis-cli --cluster reshard`` does it (SETSLOT IMPORTING /
MIGRATING, MIGRATE a few keys at a time, SETSLOT NODE), with publishes going on between the
steps: some land on the old owner, some are redirected (ASK / TRYAGAIN) to the new one, and
the old owner ends the subscriptions (``sunsubscribe``) when it gives the slot away.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from rtwidgets.gateway.brokers.redis_cluster import RedisClusterBroker
from tests._support.broker_listener import Collector
from tests._support.redis_cluster import RedisClusterProcesses
from tests._support.waiting import eventually
from tests.cluster.conftest import Publisher

CHANNEL = "room:migrating"
TOTAL = 150
WAIT = 60.0  # generous bound, not a timing assertion


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["async", "wait_replicas=1"])
async def test_slot_migration_while_messages_flow(
    redis_cluster: RedisClusterProcesses, prefix: str, wait_replicas: int
) -> None:
    """With ``wait_replicas`` the broker places the publish itself (script + WAIT on one
    connection), so it follows ASK (``ASKING`` at the importing node) and TRYAGAIN itself."""
    heard = {"a": Collector(), "b": Collector()}
    brokers = {
        name: RedisClusterBroker(redis_cluster.url, key_prefix=prefix, wait_replicas=wait_replicas)
        for name in heard
    }
    for name, broker in brokers.items():
        broker.set_listener(heard[name])
        await broker.start()
    try:
        for broker in brokers.values():
            await broker.attach(CHANNEL)
        slot = redis_cluster.keyslot(f"{prefix}:{{{CHANNEL}}}:events")
        source = redis_cluster.master_of(slot)
        target = next(r for r in redis_cluster.roles() if r.master and r.slots and r.port != source.port)
        publisher = Publisher(brokers["a"], CHANNEL)
        flowing = asyncio.create_task(publisher.publish(TOTAL))
        await eventually(lambda: len(publisher.acked) >= 20, "messages flowing before the move", WAIT)
        # Each step of the move waits a little so publishes land between the steps.
        await asyncio.to_thread(
            redis_cluster.migrate_slot, slot, target.port, between_keys=lambda: time.sleep(0.05)
        )
        moved_at = len(publisher.acked)
        await asyncio.wait_for(flowing, WAIT)

        assert redis_cluster.master_of(slot).port == target.port
        assert 20 <= moved_at < TOTAL, "the move happened while messages were flowing"
        acked = publisher.acked
        assert [f["data"] for f in acked] == list(range(TOTAL))
        assert [f["offset"] for f in acked] == list(range(1, TOTAL + 1))
        assert len({f["epoch"] for f in acked}) == 1, "a migration keeps the channel's epoch"
        for name, collector in heard.items():
            await eventually(
                lambda c=collector: len(c.of(CHANNEL, "message")) >= TOTAL, f"{name} to receive all", WAIT
            )
            got = collector.of(CHANNEL, "message")
            assert [f["data"] for f in got] == list(range(TOTAL)), f"{name}: exactly once, in order"
            assert [(f["epoch"], f["offset"]) for f in got] == [(f["epoch"], f["offset"]) for f in acked]
        # The subscriptions followed the slot: both brokers are subscribed at the new owner.
        for broker in brokers.values():
            shard = broker._route[CHANNEL]
            assert shard.name.endswith(f":{target.port}")
            assert broker.connected
            assert broker.stats()["reconnects"] >= 1, "the old owner's sunsubscribe was followed"
    finally:
        for broker in brokers.values():
            await broker.close()


async def test_a_message_published_after_the_move_reaches_a_late_subscriber(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    """The slot map of a broker that never saw the move is stale: its SSUBSCRIBE is refused
    (MOVED) and routed again, and its publishes follow MOVED; nothing is lost."""
    channel = "room:moved-before"
    early = RedisClusterBroker(redis_cluster.url, key_prefix=prefix)
    heard = Collector()
    early.set_listener(heard)
    await early.start()
    try:
        first = await early.publish(channel, {"type": "message", "data": "before"})
        slot = redis_cluster.keyslot(f"{prefix}:{{{channel}}}:events")
        source = redis_cluster.master_of(slot)
        target = next(r for r in redis_cluster.roles() if r.master and r.slots and r.port != source.port)
        await asyncio.to_thread(redis_cluster.migrate_slot, slot, target.port)
        await early.attach(channel)  # routed by the stale map first
        after = await early.publish(channel, {"type": "message", "data": "after"})
        await heard.wait(lambda: len(heard.of(channel, "message")) >= 1, "the message after the move")
        got = heard.of(channel, "message")
        assert [f["data"] for f in got] == ["after"]
        assert (after["epoch"], after["offset"]) == (first["epoch"], 2)
        assert early._route[channel].name.endswith(f":{target.port}")
    finally:
        await early.close()
