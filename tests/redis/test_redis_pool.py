"""More commands in flight than the broker's Redis connection pool holds: they wait for a
connection (bounded by ``command_timeout``) instead of failing.

redis-py's asyncio pool refuses a command outright ("Too many connections") once
``max_connections`` (100) are busy; a reconnect storm of a few hundred clients re-subscribing
at once sends that many snapshot reads at a time, which were then answered ``unavailable``.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from rtwidgets.gateway.brokers.redis import RedisBroker
from tests._support.redis_server import RedisServer

pytestmark = pytest.mark.redis

IN_FLIGHT = 400  # well above the pool's 100 connections


async def test_a_burst_of_snapshots_waits_for_a_pooled_connection(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url, key_prefix="pool" + secrets.token_hex(3))
    await broker.start()
    try:
        await broker.publish("room", {"type": "message", "data": "x"})
        results = await asyncio.gather(
            *(
                broker.snapshot("room", last_event_id=None, epoch=None, history=1, want_state=False)
                for _ in range(IN_FLIGHT)
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == [], f"{len(errors)} of {IN_FLIGHT} failed, first: {errors[:1]!r}"
        assert all(len(r.events) == 1 for r in results if not isinstance(r, BaseException))
        # The pool stays bounded: it never opened more connections than its limit.
        pool = broker._client().connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        assert 0 < opened <= pool.max_connections
    finally:
        await broker.close()
