"""``rtwidgets gateway --workers 2 --redis URL``: two gateway processes on one port, one Redis.

Real processes (the CLI as supervisor, its two workers: :mod:`tests._support.worker_group`), a
real redis-server, real sockets and the asyncio client.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtwidgets.auth import issue_token
from rtwidgets.core.connection import ConnectionState
from rtwidgets.subscription import ChannelSubscription
from tests._support.redis_server import RedisServer
from tests._support.waiting import wait_until
from tests._support.worker_group import (
    SECRET,
    T,
    clients_on_two_workers,
    close_codes,
    connect_client,
    worker_group,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def channel() -> str:
    return f"room:{uuid.uuid4().hex[:8]}"  # the tests share one Redis (the CLI has no key prefix)


def data_of(ch: ChannelSubscription) -> list[Any]:
    return [m["data"] for m in ch.messages]


def assert_exactly_once_in_order(ch: ChannelSubscription, count: int) -> None:
    assert data_of(ch) == list(range(count))
    offsets = [m["offset"] for m in ch.messages]
    assert offsets == list(range(offsets[0], offsets[0] + count))  # no gap, no duplicate


# ----------------------------------------------------------------------------- tests


async def test_two_workers_share_the_port_and_their_clients_chat(
    tmp_path: Path, redis_server: RedisServer, channel: str
) -> None:
    with worker_group(tmp_path, redis_server.url) as group:
        workers = await asyncio.to_thread(group.wait_listening, 2)
        # The supervisor serves nothing: only the workers listen.
        assert not any(c.status == psutil.CONN_LISTEN for c in group.supervisor.net_connections("tcp"))
        pair = await clients_on_two_workers(group, "alice", "bob")
        alice, bob = pair["a"], pair["b"]
        assert {pair["worker_a"], pair["worker_b"]} == set(workers)
        try:
            a_ch = await alice.subscribe(channel, presence=True)
            b_ch = await bob.subscribe(channel, presence=True)
            await a_ch.wait_for(lambda c: "bob" in c.users, T)  # presence crosses workers too
            await a_ch.publish({"from": "alice", "text": "hi bob"})
            await b_ch.wait_for(lambda c: len(c.messages) == 1, T)
            await b_ch.publish({"from": "bob", "text": "hi alice"})
            await a_ch.wait_for(lambda c: len(c.messages) == 2, T)
            # Bob's own message comes back to him through Redis too: wait for it as well.
            await b_ch.wait_for(lambda c: len(c.messages) == 2, T)
            assert (
                data_of(a_ch)
                == data_of(b_ch)
                == [
                    {"from": "alice", "text": "hi bob"},
                    {"from": "bob", "text": "hi alice"},
                ]
            )
        finally:
            await alice.close()
            await bob.close()


async def test_a_killed_worker_is_restarted_and_its_clients_resume(
    tmp_path: Path, redis_server: RedisServer, channel: str
) -> None:
    with worker_group(tmp_path, redis_server.url) as group:
        await asyncio.to_thread(group.wait_listening, 2)
        pair = await clients_on_two_workers(group, "reader", "writer")
        reader, victim, writer = pair["a"], pair["worker_a"], pair["b"]
        try:
            ch = await reader.subscribe(channel)
            wch = await writer.subscribe(channel)

            async def publish(start: int, stop: int) -> None:
                for i in range(start, stop):
                    await wch.publish(i)
                    await asyncio.sleep(0.01)  # pacing under the publish rate limit

            await publish(0, 20)
            await ch.wait_for(lambda c: len(c.messages) == 20, T)
            publishing = asyncio.create_task(publish(20, 80))  # goes on while the worker is down
            os.kill(victim, signal.SIGKILL)
            await reader.wait_for_state(ConnectionState.RECONNECTING, ConnectionState.CONNECTING, timeout=T)
            # The supervisor starts a new worker in its place: two listen again.
            await asyncio.to_thread(group.wait_listening, 2, (victim,))
            await reader.wait_for_state(ConnectionState.CONNECTED, timeout=T)
            await asyncio.wait_for(publishing, T)
            await ch.wait_for(lambda c: len(c.messages) == 80, T)
            assert_exactly_once_in_order(ch, 80)
        finally:
            await reader.close()
            await writer.close()
        err = group.gw.stderr_text()
        assert f"(pid {victim}) exited unexpectedly (killed by SIGKILL)" in err
        assert "restart 1 of worker" in err and "Traceback" not in err


async def test_sighup_rolls_the_workers_and_a_publisher_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, channel: str
) -> None:
    with worker_group(tmp_path, redis_server.url, "--log-level", "info") as group:  # the roll's log lines
        old = await asyncio.to_thread(group.wait_listening, 2)
        reader, _ = await connect_client(group, "reader")
        writer, _ = await connect_client(group, "writer")
        try:
            ch = await reader.subscribe(channel)
            wch = await writer.subscribe(channel)
            rolled = asyncio.Event()
            published = 0
            during_roll = 0
            hup_sent = False
            closes = {"reader": close_codes(reader), "writer": close_codes(writer)}

            async def publish_throughout() -> None:
                # Until the roll is done, then 20 more; each publish awaits its ack, so a publish
                # in flight when the writer's worker closes is resent and stored exactly once.
                nonlocal published, during_roll
                extra = 20
                while extra > 0 and published < 5000:
                    await wch.publish(published)
                    published += 1
                    if rolled.is_set():
                        extra -= 1
                    elif hup_sent:
                        during_roll += 1
                    await asyncio.sleep(0.01)  # pacing under the publish rate limit

            publishing = asyncio.create_task(publish_throughout())
            await ch.wait_for(lambda c: len(c.messages) >= 20, T)
            assert group.gw.proc is not None
            group.gw.proc.send_signal(signal.SIGHUP)
            hup_sent = True
            new = await asyncio.to_thread(group.wait_listening, 2, tuple(old))
            await asyncio.to_thread(
                wait_until, lambda: "rolling restart done" in group.gw.stderr_text(), T, "the roll's end"
            )
            rolled.set()
            await asyncio.wait_for(publishing, T * 2)
            total = published
            await ch.wait_for(lambda c: len(c.messages) == total, T)
            await wch.wait_for(lambda c: len(c.messages) == total, T)
            assert_exactly_once_in_order(ch, total)
            assert_exactly_once_in_order(wch, total)
            assert during_roll > 0  # the roll really happened while messages flowed
            # Every worker was replaced; both clients were moved with 1012 ("restarting").
            assert not set(new) & set(old)
            for who, codes in closes.items():
                # None: a reconnect attempt refused by a listener just closing (then retried).
                assert 1012 in codes and set(codes) <= {1012, None}, (who, codes)
        finally:
            await reader.close()
            await writer.close()
        err = group.gw.stderr_text()
        assert err.count("rolling restart: worker") == 2
        assert "exited unexpectedly" not in err and "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_sigterm_or_sigint_stops_every_process(
    tmp_path: Path, redis_server: RedisServer, sig: signal.Signals
) -> None:
    with worker_group(tmp_path, redis_server.url) as group:
        workers = await asyncio.to_thread(group.wait_listening, 2)
        ws = await asyncio.wait_for(connect(f"{group.gw.url}/?token={issue_token(SECRET, 'sam')}"), T)
        await asyncio.wait_for(ws.recv(), T)  # connected
        assert group.gw.proc is not None
        group.gw.proc.send_signal(sig)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), T)
        assert ws.close_code == 1012  # with --redis, as a single gateway: clients come back later
        assert await asyncio.to_thread(group.gw.proc.wait, T) == 0
        assert not any(psutil.pid_exists(pid) for pid in workers)
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            again.bind(("127.0.0.1", group.gw.port))  # nothing holds the port any more
        assert "Traceback" not in group.gw.stderr_text()


async def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, redis_server: RedisServer) -> None:
    with worker_group(tmp_path, redis_server.url) as group:
        workers = [psutil.Process(pid) for pid in await asyncio.to_thread(group.wait_listening, 2)]
        group.gw.kill9()  # no chance to stop anyone: the workers see EOF on their stdin
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, T)
        assert alive == []
        assert "the supervisor is gone" in group.gw.stderr_text()
