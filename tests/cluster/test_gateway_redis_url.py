"""``Gateway(redis="redis+cluster://...")`` runs on the Redis Cluster broker, end to end."""

from __future__ import annotations

from typing import Any

import pytest

from rtwidgets.client import RealtimeConnection
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis_cluster import RedisClusterBroker
from tests._support.waiting import eventually

pytestmark = pytest.mark.cluster


async def test_a_cluster_url_selects_the_cluster_broker(redis_cluster: Any) -> None:
    gw = Gateway("127.0.0.1", 0, redis=redis_cluster.url)
    assert isinstance(gw.broker, RedisClusterBroker)
    await gw.start_async()
    conns = [RealtimeConnection(gw.url, token=gw.token(u)) for u in ("alice", "bob")]
    try:
        for c in conns:
            await c.connect(timeout=10)
        a = await conns[0].subscribe("cluster-url-room", history=5)
        b = await conns[1].subscribe("cluster-url-room", history=5)
        await a.publish("over the cluster")
        await eventually(lambda: [m["data"] for m in b.messages] == ["over the cluster"], "bob receives")
    finally:
        for c in conns:
            await c.close()
        await gw.stop_async()
