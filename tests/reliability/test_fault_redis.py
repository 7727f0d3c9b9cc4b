"""Fault injection with Redis (markers ``fault``, ``redis``): a gateway of a Redis-backed pair is
SIGKILLed while 50 clients publish and consume through a round-robin chaos proxy, and Redis
itself is restarted (empty) mid-stream.

With Redis the history survives a gateway crash, so the expected outcome is strict: every
client reconnects (to the surviving gateway), resumes, and has received every message exactly
once and in order. An empty Redis restart loses the history, and then every client must be
told so (``recovered: false`` + snapshot), never left with a silent gap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtwidgets.chaos import ChaosProxy
from rtwidgets.core.connection import ConnectionState
from tests._support.gateway_proc import Spawn, gateway_processes
from tests._support.peers import Peer, check_stream, segments, start_crowd
from tests._support.redis_server import RedisServer, running_redis
from tests._support.waiting import eventually
from tests._support.ws import read_stream

pytestmark = [pytest.mark.fault, pytest.mark.redis]

CHANNEL = "room"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def spawn(tmp_path: Path, secret: str, redis_server: RedisServer) -> Iterator[Spawn]:
    with gateway_processes(tmp_path, secret, "--redis", redis_server.url, "--history", "100000") as start:
        yield start


async def test_kill9_one_of_two_redis_gateways_every_client_gets_everything_once(
    spawn: Spawn, secret: str, peers: list[Peer]
) -> None:
    a, b = await asyncio.gather(asyncio.to_thread(spawn), asyncio.to_thread(spawn))
    balancer = await ChaosProxy(a.port, b.port).start_async()  # round robin, skips dead targets
    try:
        crowd = await start_crowd(
            peers, balancer.url, secret, CHANNEL, count=50, publishers=10, what="acks before the crash"
        )
        publishers = crowd.publishers

        await asyncio.to_thread(a.kill9)
        lost = await eventually(
            lambda: [p for p in peers if p.state is not ConnectionState.CONNECTED], "its clients"
        )
        await eventually(lambda: all(p.state is ConnectionState.CONNECTED for p in peers), "failover", 60)
        await asyncio.to_thread(a.start)  # the crashed gateway comes back; the others carried on
        count = sum(len(p.acks) for p in publishers)
        await eventually(lambda: sum(len(p.acks) for p in publishers) >= count + 50, "acks after failover")
        await crowd.finish()

        _, stream = await read_stream(b.url, secret, CHANNEL)
        await eventually(lambda: all(p.last_offset() == max(stream) for p in peers), "caught up", 60)
        moved = [p for p in peers if p.connections >= 2]
        assert len(moved) >= len(lost) > 0
        for p in peers:
            assert p.resets == [], f"{p.name}: Redis kept the history, yet it was reset"
            [seg] = segments(p)
            check_stream(p.name, seg, stream)
        datas = [json.dumps(d, sort_keys=True) for d in stream.values()]
        assert len(set(datas)) == len(datas), "a retried publish was stored twice"
        for p in publishers:
            assert not p.refused, p.refused[:3]
            for ack in p.acks:
                assert stream[ack.offset] == ack.data
    finally:
        await balancer.stop_async()


async def test_redis_restart_mid_stream_is_reported_never_a_silent_gap(
    spawn: Spawn, secret: str, peers: list[Peer], redis_server: RedisServer
) -> None:
    gw = await asyncio.to_thread(spawn)
    crowd = await start_crowd(
        peers, gw.url, secret, CHANNEL, count=12, publishers=3, what="acks before the restart"
    )
    publishers = crowd.publishers

    await asyncio.to_thread(redis_server.stop)
    await eventually(lambda: any(p.refused for p in publishers), "publishes refused while Redis is down")
    await asyncio.to_thread(redis_server.start)
    count = sum(len(p.acks) for p in publishers)
    await eventually(lambda: sum(len(p.acks) for p in publishers) >= count + 30, "acks after the restart", 60)
    await crowd.finish()

    # Refused publishes were refused explicitly (and are not in any stream).
    codes = {code for p in publishers for _, code in p.refused}
    assert codes <= {"unavailable"}, codes
    epoch, stream = await read_stream(gw.url, secret, CHANNEL)
    await eventually(lambda: all(p.last_offset() == max(stream) for p in peers), "caught up", 60)
    for p in peers:
        segs = segments(p)
        # The old history is gone: the client must have been told (a reset to the new epoch),
        # and from then on it has the new stream exactly once, in order.
        assert len(segs) >= 2, f"{p.name}: the epoch changed under it without a reset (silent gap)"
        check_stream(p.name, segs[-1], stream)
        assert p.resets[-1].epoch == epoch
        assert p.errors == [], f"{p.name}: {p.errors}"  # the re-sync itself succeeded
