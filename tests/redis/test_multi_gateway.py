"""Several gateway processes on one real Redis, with raw WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from rtwidgets.auth import issue_token
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis import RedisBroker
from tests._support.gateway_proc import REDIS_GATEWAY, GatewayProcess, gateway_processes
from tests._support.redis_server import RedisServer

pytestmark = pytest.mark.redis

WAIT = 15.0  # generous condition-wait bound, not a timing assertion
PRESENCE_TTL = 3.0  # a killed gateway's members leave within ttl + ttl/3; ample for a loaded machine
SECRET = "multi-gateway-test-secret-" + secrets.token_hex(8)
REPLIES = ("ack", "error")

Spawn = Callable[[], Awaitable[GatewayProcess]]


@pytest.fixture
def gateways(tmp_path: Path, redis_server: RedisServer, prefix: str) -> Iterator[Spawn]:
    """``await gateways()``: one more gateway process on the module's Redis, under the test's prefix."""
    redis = ("--redis", redis_server.url, "--key-prefix", prefix, "--presence-ttl", str(PRESENCE_TTL))
    with gateway_processes(tmp_path, SECRET, *redis, entry=REDIS_GATEWAY) as spawn:

        async def start() -> GatewayProcess:
            return await asyncio.to_thread(spawn, port=0)  # no restarts here: any port

        yield start


class Client:
    """A raw protocol client that records every frame and awaits conditions."""

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.client_id: str = hello["clientId"]
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._next_id = 0
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int, user: str) -> Client:
        token = issue_token(SECRET, user)
        ws = await connect(f"ws://127.0.0.1:{port}/?token={token}")
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert hello["type"] == "connected"
        return cls(ws, hello)

    async def _read(self) -> None:
        async for raw in self.ws:
            self.frames.append(json.loads(raw))
            self._changed.set()

    async def wait(self, predicate: Callable[[], Any], what: str) -> Any:
        async def loop() -> Any:
            while not (result := predicate()):
                self._changed.clear()
                await self._changed.wait()
            return result

        try:
            return await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; frames: {self.frames[-10:]!r}") from None

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame with an ``_id`` and return its ack (or fail on its error)."""
        reply = await self.reply(frame)
        assert reply["type"] == "ack", reply
        return reply

    async def reply(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame with an ``_id`` and return the ``ack`` or ``error`` answering it."""
        self._next_id += 1
        rid = self._next_id
        await self.ws.send(json.dumps({**frame, "_id": rid}))
        reply = await self.wait(
            lambda: next((f for f in self.frames if f.get("id") == rid and f["type"] in REPLIES), None),
            f"reply to {frame['type']}",
        )
        return reply

    def messages(self, channel: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "message" and f.get("channel") == channel]

    def presence(self, channel: str) -> set[str]:
        """Client ids present, replayed from presence_sync / join / leave frames."""
        members: set[str] = set()
        for f in self.frames:
            if f.get("channel") != channel:
                continue
            if f["type"] == "presence_sync":
                members = {m["clientId"] for m in f["members"]}
            elif f["type"] == "presence_join":
                members.add(f["member"]["clientId"])
            elif f["type"] == "presence_leave":
                members.discard(f["member"]["clientId"])
        return members

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        await c.close()


async def test_three_gateways_share_order_and_presence(gateways: Spawn, clients: list[Client]) -> None:
    gws = await asyncio.gather(*(gateways() for _ in range(3)))
    for i, gw in enumerate(gws):
        clients.append(await Client.connect(gw.port, f"user{i}"))
    for c in clients:
        await c.request({"type": "subscribe", "channel": "room", "options": {"presence": True}})
    ids = {c.client_id for c in clients}
    for c in clients:
        await c.wait(lambda c=c: c.presence("room") == ids, "everyone's presence")

    async def burst(c: Client, n: int) -> None:
        for k in range(n):
            await c.request({"type": "publish", "channel": "room", "data": f"{c.client_id[:6]}-{k}"})

    await asyncio.gather(*(burst(c, 10) for c in clients))
    for c in clients:
        await c.wait(lambda c=c: len(c.messages("room")) >= 30, "30 messages")
    orders = [[(m["offset"], m["data"]) for m in c.messages("room")] for c in clients]
    assert orders[0] == orders[1] == orders[2]  # one total order, seen by everyone
    assert [o for o, _ in orders[0]] == list(range(1, 31))


async def test_reconnect_to_another_gateway_resumes(gateways: Spawn, clients: list[Client]) -> None:
    g1, g2, g3 = await asyncio.gather(*(gateways() for _ in range(3)))
    reader = await Client.connect(g1.port, "reader")
    writer = await Client.connect(g2.port, "writer")
    clients += [reader, writer]
    sub = await reader.request({"type": "subscribe", "channel": "feed", "options": {}})
    await writer.request({"type": "subscribe", "channel": "feed", "options": {}})
    for k in range(5):
        await writer.request({"type": "publish", "channel": "feed", "data": k})
    await reader.wait(lambda: len(reader.messages("feed")) == 5, "first five")
    last = reader.messages("feed")[-1]
    epoch = last["epoch"]
    assert epoch == sub["epoch"]
    await reader.close()
    clients.remove(reader)
    for k in range(5, 12):
        await writer.request({"type": "publish", "channel": "feed", "data": k})

    again = await Client.connect(g3.port, "reader")
    clients.append(again)
    ack = await again.request(
        {"type": "subscribe", "channel": "feed", "options": {"lastEventId": last["id"], "epoch": epoch}}
    )
    assert ack["recovered"] is True
    history = next(f for f in again.frames if f["type"] == "history" and f["channel"] == "feed")
    assert history["recovered"] is True
    assert [e["data"] for e in history["data"]] == list(range(5, 12))
    await writer.request({"type": "publish", "channel": "feed", "data": "live"})
    await again.wait(lambda: any(m["data"] == "live" for m in again.messages("feed")), "live message")
    seen = [e["data"] for e in history["data"]] + [m["data"] for m in again.messages("feed")]
    assert seen == [*range(5, 12), "live"]  # nothing lost, nothing twice


async def test_killed_gateway_members_leave_others_serve(gateways: Spawn, clients: list[Client]) -> None:
    doomed_gw, g2 = await asyncio.gather(gateways(), gateways())
    doomed = await Client.connect(doomed_gw.port, "doomed")
    survivor = await Client.connect(g2.port, "survivor")
    clients += [doomed, survivor]
    for c in (doomed, survivor):
        await c.request({"type": "subscribe", "channel": "lobby", "options": {"presence": True}})
    both = {doomed.client_id, survivor.client_id}
    await survivor.wait(lambda: survivor.presence("lobby") == both, "both present")

    doomed_gw.kill9()  # no goodbye: only the liveness TTL can tell
    alone = {survivor.client_id}
    await survivor.wait(lambda: survivor.presence("lobby") == alone, "leave of the dead member")
    leaves = [f for f in survivor.frames if f["type"] == "presence_leave"]
    assert [f["member"]["clientId"] for f in leaves] == [doomed.client_id]

    await survivor.request({"type": "publish", "channel": "lobby", "data": "still here"})
    await survivor.wait(lambda: survivor.messages("lobby"), "own message")
    late = await Client.connect(g2.port, "late")
    clients.append(late)
    await late.request({"type": "subscribe", "channel": "lobby", "options": {"presence": True}})
    await late.wait(lambda: any(f["type"] == "presence_sync" for f in late.frames), "presence sync")
    sync = next(f for f in late.frames if f["type"] == "presence_sync")
    assert {m["clientId"] for m in sync["members"]} == {survivor.client_id, late.client_id}


async def test_redis_restart_seen_through_a_gateway(
    restartable_redis: RedisServer, prefix: str, clients: list[Client]
) -> None:
    broker = RedisBroker(restartable_redis.url, key_prefix=prefix, connect_timeout=1.0)
    gateway = await Gateway("127.0.0.1", 0, secret=SECRET, broker=broker).start_async()
    try:
        c = await Client.connect(gateway.port or 0, "writer")
        clients.append(c)
        await c.request({"type": "subscribe", "channel": "doc", "options": {"state": True}})
        first = await c.request({"type": "publish", "channel": "doc", "data": 1, "key": "old"})
        await c.wait(lambda: c.messages("doc"), "first message")
        old = c.messages("doc")[0]

        restartable_redis.stop()
        down = await c.reply({"type": "publish", "channel": "doc", "data": 2})
        assert down["type"] == "error" and down["code"] == "unavailable"  # refused, never silent

        restartable_redis.start()
        deadline = asyncio.get_running_loop().time() + WAIT
        while (back := await c.reply({"type": "publish", "channel": "doc", "data": 3, "key": "new"}))[
            "type"
        ] == "error":
            assert back["code"] == "unavailable", back
            assert asyncio.get_running_loop().time() < deadline, "Redis did not come back"
            await asyncio.sleep(0.05)
        assert back["offset"] == 1 and back["eventId"] != first["eventId"]
        # the existing subscription is live again (the broker resubscribed by itself)
        await c.wait(lambda: any(m["data"] == 3 for m in c.messages("doc")), "message after restart")

        await c.request({"type": "unsubscribe", "channel": "doc"})
        resume = {"lastEventId": old["id"], "epoch": old["epoch"]}
        ack = await c.request({"type": "subscribe", "channel": "doc", "options": resume})
        assert ack["recovered"] is False and ack["epoch"] != old["epoch"]
        history = [f for f in c.frames if f["type"] == "history" and f.get("recovered") is False]
        assert len(history) == 1 and set(history[0]["state"]) == {"new"}
    finally:
        await gateway.stop_async()
