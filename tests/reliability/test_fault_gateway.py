"""Fault injection with real processes (marker ``fault``): a gateway killed with SIGKILL and
restarted, a network partition through the chaos proxy, and slow consumers.

The gateway runs as ``python -m rtwidgets gateway`` on a fixed free port, so clients reconnect
to the same URL after a restart. Clients are real :class:`RealtimeConnection` peers; publishers
record the acks they got, consumers record everything the application saw, and the checks
compare both with the authoritative stream read back from the gateway at the end.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtwidgets.auth import issue_token
from rtwidgets.chaos import ChaosProxy
from rtwidgets.core.connection import ConnectionState, HeartbeatConfig
from tests._support.gateway_proc import Spawn, gateway_processes
from tests._support.peers import Peer, assert_contiguous, check_stream, segments, start_crowd
from tests._support.waiting import eventually
from tests._support.ws import read_stream

pytestmark = pytest.mark.fault

CHANNEL = "room"


@pytest.fixture
def spawn(tmp_path: Path, secret: str) -> Iterator[Spawn]:
    with gateway_processes(tmp_path, secret) as start:
        yield start


def metric(url: str, name: str) -> float:
    """One Prometheus sample from the gateway's ``/metrics`` (sum over label sets)."""
    http = url.replace("ws://", "http://") + "/metrics"
    with urllib.request.urlopen(http, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#") and line[len(name)] in " {"
    )


async def test_kill9_memory_gateway_reports_lost_history_then_streams_exactly_once(
    spawn: Spawn, secret: str, peers: list[Peer]
) -> None:
    """50 clients publish and consume; the gateway is SIGKILLed and restarted on the same port.

    The in-memory history dies with the process, so every client must be *told*: exactly one
    ``on_reset`` (``recovered: false`` + snapshot). Before it, each client saw a gap-free prefix
    of the old stream that matches the acks; after it, exactly the new stream, once, in order.
    """
    gw = await asyncio.to_thread(spawn, "--history", "100000")
    crowd = await start_crowd(
        peers, gw.url, secret, CHANNEL, count=50, publishers=10, what="acks before the crash"
    )
    publishers = crowd.publishers
    await asyncio.to_thread(gw.kill9)
    await eventually(lambda: all(p.state is not ConnectionState.CONNECTED for p in peers), "clients noticing")
    await asyncio.to_thread(gw.start)
    await eventually(lambda: all(p.connections >= 2 and p.resets for p in peers), "reconnect + reset", 60)
    await eventually(
        lambda: all(sum(a.connection >= 2 for a in p.acks) >= 5 for p in publishers), "acks after restart"
    )
    await crowd.finish()

    epoch, stream = await read_stream(gw.url, secret, CHANNEL)
    await eventually(lambda: all(p.last_offset() == max(stream) for p in peers), "consumers caught up")
    old_acks = {a.offset: a.data for p in publishers for a in p.acks if a.connection == 1}
    new_acks = [a for p in publishers for a in p.acks if a.connection >= 2]
    for p in peers:
        assert len(p.resets) == 1, f"{p.name}: {len(p.resets)} resets"
        reset = p.resets[0]
        assert reset.frame.get("recovered") is False and reset.epoch == epoch
        before, after = segments(p)
        assert before, f"{p.name}: saw nothing before the crash"
        assert_contiguous(p.name, before)
        for offset, data, _ in before:
            assert old_acks.get(offset, data) == data, f"{p.name}: offset {offset} differs from its ack"
        check_stream(p.name, after, stream)
        assert after[0][0] == 1, f"{p.name}: the snapshot must start at the first message of the new epoch"
    # Every publish acked by the new gateway is in the new stream exactly once, in publisher order.
    datas = list(stream.values())
    assert len({json.dumps(d, sort_keys=True) for d in datas}) == len(datas), "a message was stored twice"
    for ack in new_acks:
        assert stream[ack.offset] == ack.data
    for i in range(len(publishers)):
        ns = [d["n"] for d in datas if d["p"] == i]
        assert ns == sorted(ns), f"publisher {i} out of order in the new stream"
    assert not any(p.refused for p in publishers), [p.refused[:3] for p in publishers]


async def test_partition_through_chaos_proxy_reconnects_and_catches_up(
    spawn: Spawn, secret: str, peers: list[Peer]
) -> None:
    """Clients behind a paused proxy notice the silence (heartbeat), go ``reconnecting``, and after
    the partition heals resume from their last event: ``recovered: true``, nothing lost."""
    gw = await asyncio.to_thread(spawn, "--history", "100000")
    proxy = await ChaosProxy(gw.port).start_async()
    try:
        hb = HeartbeatConfig(interval=0.3, timeout=0.6)
        behind = [Peer(f"b{i}", proxy.url, issue_token(secret, f"b{i}"), heartbeat=hb) for i in range(10)]
        direct = [Peer(f"d{i}", gw.url, issue_token(secret, f"d{i}")) for i in range(2)]
        peers.extend([*behind, *direct])
        await asyncio.gather(*(p.start(CHANNEL) for p in peers))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(p.publish_loop(i, stop, pace=0.02)) for i, p in enumerate(direct)]
        await eventually(lambda: all(len(p.timeline) >= 5 for p in behind), "traffic before the partition")

        proxy.pause()
        await eventually(
            lambda: all(ConnectionState.RECONNECTING in p.states for p in behind), "clients reconnecting"
        )
        count = sum(len(p.acks) for p in direct)
        await eventually(lambda: sum(len(p.acks) for p in direct) >= count + 20, "publishing meanwhile")
        proxy.resume()
        await eventually(lambda: all(p.state is ConnectionState.CONNECTED for p in behind), "healed", 60)
        await eventually(lambda: sum(len(p.acks) for p in direct) >= count + 40, "publishing after")
        stop.set()
        await asyncio.gather(*tasks)

        _, stream = await read_stream(gw.url, secret, CHANNEL)
        await eventually(lambda: all(p.last_offset() == max(stream) for p in peers), "caught up", 60)
        for p in peers:
            assert p.resets == [], f"{p.name}: history was available, yet it was reset"
            [seg] = segments(p)
            check_stream(p.name, seg, stream)
        assert proxy.stats().connections_total > len(behind)  # they really reconnected through it
    finally:
        await proxy.stop_async()


async def test_slow_consumers_are_closed_4008_memory_stays_bounded_and_they_recover(
    spawn: Spawn, secret: str, peers: list[Peer]
) -> None:
    """Consumers that stop reading (behind a paused proxy) while 20 MB are published: the gateway
    closes them with 4008 once 1 MiB is unsent, its memory does not grow with the backlog, fast
    consumers see everything, and the slow ones resume from history when they read again."""
    gw = await asyncio.to_thread(spawn, "--history", "100000")
    proxy = await ChaosProxy(gw.port).start_async()
    try:
        # No client heartbeat: detecting the stall is the gateway's job here, not the client's.
        off = HeartbeatConfig(interval=0)
        slow = [Peer(f"s{i}", proxy.url, issue_token(secret, f"s{i}"), heartbeat=off) for i in range(3)]
        fast = [Peer(f"f{i}", gw.url, issue_token(secret, f"f{i}")) for i in range(2)]
        pubs = [Peer(f"w{i}", gw.url, issue_token(secret, f"w{i}")) for i in range(5)]
        peers.extend([*slow, *fast, *pubs])
        await asyncio.gather(*(p.start(CHANNEL) for p in peers))
        rss_before, _ = gw.usage()

        proxy.pause()
        blob = "x" * 8000
        per_publisher = 500  # 5 x 500 x 8 kB = 20 MB, 60 MB owed to the three stalled readers

        async def flood(peer: Peer, i: int) -> None:
            assert peer.handle is not None
            for n in range(per_publisher):
                while True:
                    try:
                        await peer.handle.publish({"p": i, "n": n, "blob": blob})
                        break
                    except Exception as exc:  # rate_limited: back off briefly and retry the same n
                        assert getattr(exc, "code", "") == "rate_limited", exc
                        await asyncio.sleep(0.05)

        await asyncio.gather(*(flood(p, i) for i, p in enumerate(pubs)))
        closes = await eventually(
            lambda: metric(gw.url, "rtwidgets_slow_consumer_closes_total") >= 3, "4008 closes", 60
        )
        assert closes
        rss_after, _ = gw.usage()
        growth = rss_after - rss_before
        print(f"\nslow consumers: gateway RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MB")
        assert growth < 40 * 2**20, f"gateway RSS grew by {growth / 2**20:.1f} MB while 60 MB were owed"

        proxy.resume()
        await eventually(lambda: all(p.connections >= 2 for p in slow), "slow consumers reconnect", 60)
        _, stream = await read_stream(gw.url, secret, CHANNEL)
        await eventually(lambda: all(p.last_offset() == max(stream) for p in slow + fast), "caught up", 60)
        for p in slow:
            assert p.close_codes[0] == 4008, f"{p.name}: closed with {p.close_codes}, expected 4008"
            assert p.resets == [], f"{p.name}: history covered the backlog, yet it was reset"
            [seg] = segments(p)
            check_stream(p.name, seg, stream)
        for p in fast:
            assert p.connections == 1, f"{p.name}: a fast consumer was disconnected"
            [seg] = segments(p)
            check_stream(p.name, seg, stream)
    finally:
        await proxy.stop_async()
