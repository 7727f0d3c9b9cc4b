"""A rolling restart behind a load balancer: two gateways on one Redis, one is restarted.

Its clients are closed with 1012 ("restarting"), reconnect through the balancer to the other
gateway and resume from their ``lastEventId``: every message arrives exactly once, in order, and
presence follows them. A real redis-server, real sockets, the asyncio client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rtwidgets.chaos import ChaosProxy
from rtwidgets.client import RealtimeConnection
from rtwidgets.core.connection import ConnectionState, ReconnectConfig
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis import RedisBroker
from tests._support.redis_server import RedisServer

pytestmark = pytest.mark.redis

SECRET = "rolling-restart-secret-" + "x" * 32
T = 15.0


@pytest.fixture
async def two_gateways(redis_server: RedisServer, prefix: str) -> AsyncIterator[list[Gateway]]:
    gws = []
    for _ in range(2):
        broker = RedisBroker(redis_server.url, key_prefix=prefix, presence_ttl=5.0)
        gws.append(await Gateway("127.0.0.1", 0, secret=SECRET, broker=broker).start_async())
    yield gws
    for gw in gws:
        await gw.stop_async()


async def test_rolling_restart_moves_clients_without_loss(two_gateways: list[Gateway]) -> None:
    first, second = two_gateways
    # The project's TCP proxy as the load balancer: round robin over live targets, so the first
    # connection goes to the first gateway and, once it is gone, reconnects reach the second.
    lb = await ChaosProxy(first.port, second.port).start_async()
    fast = ReconnectConfig(base_delay=0.05, max_delay=0.2)
    reader = RealtimeConnection(lb.url, token=first.token("reader"), reconnect=fast)
    writer = RealtimeConnection(second.url, token=second.token("writer"), reconnect=fast)
    try:
        await reader.connect(timeout=T)
        await writer.connect(timeout=T)
        assert first.stats()["connections_total"] == 1  # the reader, through the balancer
        ch = await reader.subscribe("feed", presence=True)
        wch = await writer.subscribe("feed", presence=True)
        await wch.wait_for(lambda c: "reader" in c.users, T)

        async def publish(n: int, start: int) -> None:
            for i in range(start, start + n):
                await wch.publish(i)

        await publish(20, 0)
        await ch.wait_for(lambda c: len(c.messages) == 20, T)
        publishing = asyncio.create_task(publish(50, 20))  # keeps going during the restart
        await first.stop_async(restart=True)
        await reader.wait_for_state(ConnectionState.RECONNECTING, ConnectionState.CONNECTING, timeout=T)
        assert reader.stats().last_close_code == 1012
        await reader.wait_for_state(ConnectionState.CONNECTED, timeout=T)
        assert second.stats()["connections_total"] == 2  # the balancer sent it to the other gateway
        await publishing
        await ch.wait_for(lambda c: len(c.messages) == 70, T)
        assert [m["data"] for m in ch.messages] == list(range(70))  # exactly once, in order
        offsets = [m["offset"] for m in ch.messages]
        assert offsets == list(range(offsets[0], offsets[0] + 70))
        # Presence followed it: the writer still sees the reader (its member moved gateways).
        await wch.wait_for(lambda c: "reader" in c.users, T)
    finally:
        await reader.close()
        await writer.close()
        await lb.stop_async()
