"""Several handles on one channel of one connection, on two gateways sharing a real Redis.

Over Redis a stored message's fan-out trails its storage, so a late handle's snapshot can
cover messages the live subscription has not received yet: each must still see every
message once, in order (see tests/_support/late_join.py).
"""

from __future__ import annotations

import pytest

from rtwidgets.client import RealtimeConnection
from rtwidgets.core.connection import ReconnectConfig
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis import RedisBroker
from tests._support.late_join import late_joins_under_a_stream
from tests._support.redis_server import RedisServer

pytestmark = pytest.mark.redis

SECRET = "shared-subscription-redis-secret-0123456789"


@pytest.mark.parametrize("seed", [1, 2])
async def test_late_handles_across_gateways(redis_server: RedisServer, prefix: str, seed: int) -> None:
    gateways = [
        Gateway("127.0.0.1", 0, secret=SECRET, broker=RedisBroker(redis_server.url, key_prefix=prefix))
        for _ in range(2)
    ]
    clients: list[RealtimeConnection] = []
    try:
        for gw in gateways:
            await gw.start_async()
        for gw, user in zip(gateways, ("alice", "bob"), strict=True):
            conn = RealtimeConnection(
                gw.url, token=gw.token(user), reconnect=ReconnectConfig(base_delay=0.02)
            )
            clients.append(conn)
            await conn.connect(timeout=10)
        await late_joins_under_a_stream(clients[0], clients[1], "stream", total=400, joins=12, seed=seed)
    finally:
        for conn in clients:
            await conn.close()
        for gw in gateways:
            await gw.stop_async()
