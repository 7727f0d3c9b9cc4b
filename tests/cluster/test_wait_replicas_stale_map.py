"""``wait_replicas`` through a stale slot map: the publish reaches a node that is now a replica.

After a failover the killed master comes back as its replacement's replica; until the broker
refreshes its slot map it sends the publish script and ``WAIT`` there. The node answers the
script with ``MOVED`` and ``WAIT`` with an error of its own ("WAIT cannot be used with replica
instances"); the broker must read both, refresh the map and publish at the real owner, not
fail the publish with the replica's error.
"""

from __future__ import annotations

from redis.asyncio.cluster import ClusterNode

from rtwidgets.gateway.brokers.redis_cluster import RedisClusterBroker
from tests._support.redis_cluster import RedisClusterProcesses

CHANNEL = "room:stale-map"


async def test_a_publish_sent_to_a_replica_is_redirected_to_the_owner(
    redis_cluster: RedisClusterProcesses, prefix: str
) -> None:
    broker = RedisClusterBroker(redis_cluster.url, key_prefix=prefix, wait_replicas=1, wait_timeout=2.0)
    await broker.start()
    try:
        first = await broker.publish(CHANNEL, {"type": "message", "data": 1}, msg_id="m1")
        manager = broker._cluster.nodes_manager
        slot = redis_cluster.keyslot(f"{prefix}:{{{CHANNEL}}}:events")
        owner = redis_cluster.master_of(slot)
        replica_port = next(r.port for r in redis_cluster.roles() if r.master_id == owner.node_id)
        replica = ClusterNode("127.0.0.1", replica_port)
        # Make the map stale the way a failover does: the slot's entry names the replica.
        manager.slots_cache[slot] = [replica]
        assert broker._cluster.get_node_from_key(f"{prefix}:{{{CHANNEL}}}:events") is replica
        second = await broker.publish(CHANNEL, {"type": "message", "data": 2}, msg_id="m2")
        assert second["offset"] == first["offset"] + 1 and second["epoch"] == first["epoch"]
        # The map was refreshed: the owner is first again.
        assert manager.slots_cache[slot][0].port == redis_cluster.master_of(slot).port
    finally:
        await broker.close()
