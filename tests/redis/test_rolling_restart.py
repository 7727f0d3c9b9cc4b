"""A rolling restart behind a load balancer: two gateways on one Redis, one is restarted.

Its clients are closed with 1012 ("restarting"), reconnect through the balancer to the other
gateway and resume from their ``lastEventId``: every message arrives exactly once, in order, and
presence follows them. A real redis-server, real sockets, the asyncio client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtwidgets.client import RealtimeConnection
from rtwidgets.core.connection import ConnectionState, ReconnectConfig
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis import RedisBroker
from tests._support.redis_server import RedisServer

pytestmark = pytest.mark.redis

SECRET = "rolling-restart-secret-" + "x" * 32
T = 15.0


class Balancer:
    """A TCP load balancer on 127.0.0.1: each new connection goes to the first upstream that accepts."""

    def __init__(self, upstreams: list[int]) -> None:
        self.upstreams = upstreams
        self.port = 0
        self.routed: list[int] = []  # upstream port of each accepted connection
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.upstreams:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.routed.append(port)
            break
        else:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


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
    lb = Balancer([first.port, second.port])  # new connections prefer the first gateway
    await lb.start()
    fast = ReconnectConfig(base_delay=0.05, max_delay=0.2)
    reader = RealtimeConnection(f"ws://127.0.0.1:{lb.port}", token=first.token("reader"), reconnect=fast)
    writer = RealtimeConnection(second.url, token=second.token("writer"), reconnect=fast)
    try:
        await reader.connect(timeout=T)
        await writer.connect(timeout=T)
        assert lb.routed == [first.port]
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
        assert lb.routed[-1] == second.port  # the balancer sent it to the other gateway
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
        await lb.close()
