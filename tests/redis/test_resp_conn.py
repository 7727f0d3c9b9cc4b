"""The lean Redis connections (commands, pub/sub) against a real redis-server, and the broker's
refill ordering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rtwidgets.gateway.brokers.base import BrokerUnavailable
from rtwidgets.gateway.brokers.redis import RedisBroker
from rtwidgets.gateway.brokers.resp import RespError
from rtwidgets.gateway.brokers.resp_conn import PubSubConnection, open_command, open_pubsub
from tests._support.broker_listener import Collector, msg
from tests._support.net import free_port
from tests._support.redis_server import RedisServer, redis_command, redis_process
from tests._support.waiting import eventually

pytestmark = pytest.mark.redis


class Pushes:
    def __init__(self) -> None:
        self.items: list[list[Any]] = []

    def __call__(self, item: list[Any]) -> None:
        self.items.append(item)

    def kinds(self) -> list[bytes]:
        return [i[0] for i in self.items]


@pytest.fixture
async def conn(redis_server: RedisServer) -> AsyncIterator[tuple[PubSubConnection, Pushes]]:
    pushes = Pushes()
    c = await open_pubsub(redis_server.url, pushes, timeout=5)
    yield c, pushes
    c.close()


async def test_subscribe_receive_ping_unsubscribe(
    redis_server: RedisServer, conn: tuple[PubSubConnection, Pushes], prefix: str
) -> None:
    c, pushes = conn
    c.subscribe(f"{prefix}:a", f"{prefix}:b")
    await eventually(lambda: pushes.kinds().count(b"subscribe") == 2, "two confirmations")
    assert [i[1] for i in pushes.items] == [f"{prefix}:a".encode(), f"{prefix}:b".encode()]
    payload = '{"x":"\\r\\n é"}'
    assert redis_command(redis_server.port, "PUBLISH", f"{prefix}:b", payload) == b":1\r\n"
    await eventually(lambda: b"message" in pushes.kinds(), "the message")
    assert pushes.items[-1] == [b"message", f"{prefix}:b".encode(), payload.encode()]
    reads = c.reads
    c.ping()
    await eventually(lambda: pushes.items[-1][0] == b"pong", "pong")
    assert c.reads > reads
    c.unsubscribe(f"{prefix}:b")
    await eventually(lambda: pushes.kinds()[-1] == b"unsubscribe", "unsubscribe confirmation")
    assert redis_command(redis_server.port, "PUBLISH", f"{prefix}:b", "gone") == b":0\r\n"
    c.close()
    assert await c.closed is None  # closed on purpose: no error


async def test_killed_by_the_server_ends_with_an_error(
    redis_server: RedisServer, conn: tuple[PubSubConnection, Pushes], prefix: str
) -> None:
    c, pushes = conn
    c.subscribe(f"{prefix}:k")
    await eventually(lambda: pushes.kinds() == [b"subscribe"], "confirmation")
    redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
    with pytest.raises(RedisConnectionError, match="lost"):
        await asyncio.wait_for(c.closed, 10)
    with pytest.raises(RedisConnectionError):
        c.ping()


async def test_a_failing_handler_ends_the_connection(redis_server: RedisServer, prefix: str) -> None:
    def boom(item: list[Any]) -> None:
        raise RuntimeError("listener bug")

    c = await open_pubsub(redis_server.url, boom, timeout=5)
    c.subscribe(f"{prefix}:h")
    with pytest.raises(RedisConnectionError, match="listener bug"):
        await asyncio.wait_for(c.closed, 10)


@pytest.fixture
def protected_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server that requires the password ``s3cret``; yields its port."""
    port = free_port()
    args = ("--port", str(port), "--bind", "127.0.0.1", "--requirepass", "s3cret")
    with redis_process(tmp_path, *args, ready=lambda: _answers_noauth(port), what="password redis-server"):
        yield port


def _answers_noauth(port: int) -> bool:
    try:
        return b"NOAUTH" in redis_command(port, "PING", timeout=0.5)
    except OSError:
        return False


@pytest.mark.parametrize("userinfo", [":s3cret", "default:s3cret"], ids=["password", "user+password"])
async def test_auth(protected_redis: int, userinfo: str) -> None:
    pushes = Pushes()
    c = await open_pubsub(f"redis://{userinfo}@127.0.0.1:{protected_redis}/0", pushes, timeout=5)
    c.subscribe("auth-ok")
    await eventually(lambda: pushes.kinds() == [b"subscribe"], "subscribed after AUTH")
    c.close()
    cmd = await open_command(f"redis://{userinfo}@127.0.0.1:{protected_redis}/3", timeout=5)
    assert await cmd.call("SET", "k", "v", timeout=5) == "OK"
    assert b" db=3 " in await cmd.call("CLIENT", "INFO", timeout=5)  # SELECT from the URL
    cmd.close()


async def test_wrong_password_is_refused(protected_redis: int) -> None:
    with pytest.raises(RedisConnectionError, match="AUTH"):
        await open_pubsub(f"redis://:wrong@127.0.0.1:{protected_redis}/0", Pushes(), timeout=5)
    with pytest.raises(RedisConnectionError, match="refused"):
        await open_command(f"redis://:wrong@127.0.0.1:{protected_redis}/0", timeout=5)


async def test_commands_are_pipelined_in_order(redis_server: RedisServer, prefix: str) -> None:
    cmd = await open_command(redis_server.url, timeout=5)
    try:
        replies = await asyncio.gather(*(cmd.call("INCR", f"{prefix}:n", timeout=5) for _ in range(50)))
        assert replies == list(range(1, 51))  # written and answered in call order
        with pytest.raises(RespError, match="WRONGTYPE"):
            await cmd.call("LPUSH", f"{prefix}:n", "x", timeout=5)
        assert await cmd.call("GET", f"{prefix}:n", timeout=5) == b"50"  # still usable after an error reply
        assert await cmd.call("GET", f"{prefix}:missing", timeout=5) is None
    finally:
        cmd.close()


async def test_a_late_reply_drops_the_connection(redis_server: RedisServer, prefix: str) -> None:
    cmd = await open_command(redis_server.url, timeout=5)
    other = asyncio.ensure_future(cmd.call("BLPOP", f"{prefix}:never", "0", timeout=0.3))
    with pytest.raises(RedisTimeoutError):
        await other
    assert not cmd.is_open  # its reply would have been taken for the next command's
    with pytest.raises(RedisConnectionError):
        await cmd.call("PING", timeout=5)


async def test_pending_calls_fail_when_the_server_drops_the_connection(
    redis_server: RedisServer, prefix: str
) -> None:
    cmd = await open_command(redis_server.url, timeout=5)
    waiting = asyncio.ensure_future(cmd.call("BLPOP", f"{prefix}:never2", "0", timeout=30))
    await eventually(lambda: b"cmd=blpop" in redis_server.command("CLIENT", "LIST"), "BLPOP blocked")
    redis_server.command("CLIENT", "KILL", "TYPE", "normal")
    with pytest.raises(RedisConnectionError, match="lost"):
        await asyncio.wait_for(waiting, 10)


async def test_unsupported_url_options_are_refused(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="not supported: socket_timeout"):
        await open_pubsub(f"{redis_server.url}?socket_timeout=3", Pushes(), timeout=5)
    broker = RedisBroker(f"{redis_server.url}?socket_timeout=3")
    with pytest.raises(BrokerUnavailable, match=r"invalid Redis URL.*socket_timeout"):
        await broker.start()  # refused at once, never a reconnect loop


async def test_live_messages_during_a_refill_wait_for_it(redis_server: RedisServer, prefix: str) -> None:
    """After a pub/sub drop, messages arriving while the gap is being refilled are delivered after
    the refilled ones: in offset order, none lost, none twice."""
    a = RedisBroker(redis_server.url, key_prefix=prefix, connect_timeout=2.0)
    b = RedisBroker(redis_server.url, key_prefix=prefix, connect_timeout=2.0)
    lb = Collector()
    b.set_listener(lb)
    a.set_listener(Collector())
    await a.start()
    await b.start()
    try:
        await a.attach("room")
        await b.attach("room")
        await a.publish("room", msg(0))
        await lb.wait(lambda: len(lb.of("room")) == 1, "first")
        gate, started = asyncio.Event(), asyncio.Event()
        refill = b._fill_gap

        async def slow_refill(channel: str) -> None:
            started.set()
            await gate.wait()
            await refill(channel)

        b._fill_gap = slow_refill  # type: ignore[method-assign]
        redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
        for i in range(1, 10):  # stored while b's pub/sub is down
            await a.publish("room", msg(i))
        await asyncio.wait_for(started.wait(), 15)
        for i in range(10, 20):  # live, while b refills
            await a.publish("room", msg(i))
        # They reach b during its refill: held there, not delivered ahead of the refill.
        held = b._attached["room"].catchup  # the channel's catch-up core holds them
        await eventually(lambda: held.held_frames == 10, "10 live messages held")
        assert [f["data"] for f in lb.of("room")] == [0]
        gate.set()
        await lb.wait(lambda: len(lb.of("room", "message")) >= 20, "all 20")
        got = lb.of("room", "message")
        assert [f["data"] for f in got] == list(range(20))
        assert [f["offset"] for f in got] == list(range(1, 21))
    finally:
        await a.close()
        await b.close()


async def test_a_publish_after_the_connection_died_idle_just_reconnects(
    redis_server: RedisServer, prefix: str
) -> None:
    broker = RedisBroker(redis_server.url, key_prefix=prefix, connect_timeout=2.0)
    broker.set_listener(Collector())
    await broker.start()
    try:
        first = await broker.publish("room", msg("one"))
        conn = broker._cmd_conn
        assert conn is not None and conn.is_open
        redis_server.command("CLIENT", "KILL", "TYPE", "normal")
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(conn.closed, 10)
        # No msgId, yet no error: the dead connection is noticed before anything is sent.
        second = await broker.publish("room", msg("two"))
        assert second["offset"] == first["offset"] + 1
        assert broker._cmd_conn is not conn
    finally:
        await broker.close()


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server listening on a Unix socket only; yields the socket's path."""
    sock = tmp_path / "redis.sock"
    with redis_process(
        tmp_path, "--port", "0", "--unixsocket", str(sock), ready=sock.exists, what="unix redis-server"
    ):
        yield sock


async def test_broker_over_a_unix_socket(unix_redis: Path, prefix: str) -> None:
    url = f"unix://{unix_redis}?db=2"
    a, b = (RedisBroker(url, key_prefix=prefix, connect_timeout=2.0) for _ in range(2))
    la, lb = Collector(), Collector()
    a.set_listener(la)
    b.set_listener(lb)
    await a.start()
    await b.start()
    try:
        await a.attach("room")
        await b.attach("room")
        stored = await a.publish("room", msg("over unix"))
        await lb.wait(lambda: len(lb.of("room")) == 1, "delivery through the unix socket")
        assert lb.of("room")[0]["id"] == stored["id"]
        snap = await b.snapshot("room", last_event_id=None, epoch=None, history=5, want_state=False)
        assert [e["data"] for e in snap.events] == ["over unix"]
        events_key = f"{prefix}:{{room}}:events"
        assert redis.Redis(unix_socket_path=str(unix_redis), db=2).exists(events_key) == 1  # the URL's db
        assert redis.Redis(unix_socket_path=str(unix_redis), db=0).exists(events_key) == 0
    finally:
        await a.close()
        await b.close()
