"""``kill -9`` of the master that owns a channel while messages flow; its replica is promoted.

Replication is asynchronous, so the killed master may have acknowledged messages its replica
never got. The guarantee under test: subscribers keep receiving after the promotion, and a
lost message never becomes a silent gap. The promoted replica starts a new epoch for the
channel (``lua/publish.lua``: lineage), so within one epoch every subscriber sees consecutive
offsets, and a client resuming across the failover with the old epoch gets ``recovered:
False`` and the state. With ``wait_replicas=1`` every acknowledged message survives (publishes are answered
``unavailable`` until the promoted master has a replica again: the killed node, restarted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtwidgets.gateway.brokers.redis_cluster import RedisClusterBroker
from tests._support.broker_listener import Collector
from tests._support.redis_cluster import RedisClusterProcesses, running_cluster
from tests._support.waiting import eventually
from tests.cluster.conftest import Publisher

CHANNEL = "room:failover"
TOTAL = 120
KILL_AT = 40
WAIT = 90.0  # generous bound on promotion + catch-up, not a timing assertion


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisClusterProcesses]:
    """A cluster of this test's own: a node is killed."""
    with running_cluster(tmp_path / "cluster") as cluster:
        yield cluster


def _by_epoch(frames: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for frame in frames:
        out.setdefault(frame["epoch"], []).append(frame["offset"])
    return out


async def _run(
    cluster: RedisClusterProcesses, *, restart: bool = False, **options: Any
) -> tuple[Publisher, dict[str, Collector], Any]:
    heard = {"a": Collector(), "b": Collector()}
    brokers = {
        n: RedisClusterBroker(cluster.url, key_prefix="f", connect_timeout=2.0, **options) for n in heard
    }
    for name, broker in brokers.items():
        broker.set_listener(heard[name])
        await broker.start()
    try:
        for broker in brokers.values():
            await broker.attach(CHANNEL)
        slot = cluster.keyslot(f"f:{{{CHANNEL}}}:events")
        victim = cluster.master_of(slot)
        publisher = Publisher(brokers["a"], CHANNEL)
        flowing = asyncio.create_task(publisher.publish(TOTAL))
        await eventually(lambda: len(publisher.acked) >= KILL_AT, "messages before the kill", WAIT)
        cluster.kill(victim.port)
        if restart:  # back as the promoted master's replica, so WAIT can be satisfied again
            await eventually(
                lambda: cluster.owner_port(slot) not in (None, victim.port), "the promotion", WAIT
            )
            await asyncio.to_thread(cluster.restart, victim.port)
        await asyncio.wait_for(flowing, WAIT)
        promoted = cluster.master_of(slot)
        assert promoted.port != victim.port and promoted.master_id is None
        for name, collector in heard.items():
            await eventually(
                lambda c=collector: any(f["data"] == TOTAL - 1 for f in c.of(CHANNEL, "message")),
                f"{name} to receive the last message",
                WAIT,
            )
        last_old = heard["b"].of(CHANNEL, "message")[KILL_AT // 2]
        resume = await brokers["b"].snapshot(
            CHANNEL, last_event_id=last_old["eventId"], epoch=last_old["epoch"], history=0, want_state=False
        )
        return publisher, heard, resume
    finally:
        for broker in brokers.values():
            await broker.close()


async def test_kill_9_of_a_master_surfaces_lost_messages_as_a_new_epoch(
    own_cluster: RedisClusterProcesses,
) -> None:
    publisher, heard, resume = await _run(own_cluster)
    acked = publisher.acked
    assert publisher.unavailable > 0, "publishes were answered unavailable during the failover"
    epochs = list(dict.fromkeys(f["epoch"] for f in acked))
    assert len(epochs) == 2, "the promoted replica started a new epoch"
    old, new = epochs
    new_acks = [f for f in acked if f["epoch"] == new]
    for name, collector in heard.items():
        got = collector.of(CHANNEL, "message")
        offsets = _by_epoch(got)
        assert list(offsets) == [old, new], f"{name}: the old epoch, then the new one"
        for epoch, seen in offsets.items():
            # No silent gap and no duplicate inside an epoch: consecutive offsets.
            assert seen == list(range(seen[0], seen[0] + len(seen))), f"{name}: gap in {epoch}"
        # Every message acknowledged in the new epoch reached every subscriber, in order.
        got_new = [f["data"] for f in got if f["epoch"] == new]
        assert got_new == [f["data"] for f in new_acks], name
    # A client resuming from before the failover is told its history is gone.
    assert resume.epoch == new
    assert resume.recovered is False and resume.state is not None


async def test_wait_replicas_keeps_every_acknowledged_message(own_cluster: RedisClusterProcesses) -> None:
    publisher, _heard, resume = await _run(own_cluster, restart=True, wait_replicas=1, wait_timeout=1.0)
    stored = resume.events  # not recovered: every retained event of the current epoch
    assert resume.recovered is False
    acked_data = [f["data"] for f in publisher.acked]
    assert acked_data == list(range(TOTAL))
    # Every acknowledged message survived the failover (it had reached the replica).
    assert [f["data"] for f in stored] == acked_data
