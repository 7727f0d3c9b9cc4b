"""Connection-level limits: slow consumers (4008), idle clients (4009)."""

from __future__ import annotations

import asyncio
import json
import socket

from rtwidgets.gateway import Gateway


async def test_slow_consumer_is_closed_with_4008_while_others_keep_receiving(
    make_gateway, connect, raw_ws
) -> None:
    gw: Gateway = await make_gateway(outbound_limit_bytes=64 * 1024, publish_rate=1e6, publish_burst=100_000)
    # The slow client: a tiny receive window and a websockets client that stops reading.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.setblocking(False)
    slow = await raw_ws(f"{gw.url}/?token={gw.token('slow')}", sock=sock, max_queue=1)
    assert json.loads(await slow.recv())["type"] == "connected"
    await slow.send(json.dumps({"type": "subscribe", "channel": "firehose", "_id": 1}))
    assert json.loads(await slow.recv())["type"] == "ack"

    fast = await connect(gw, "fast")
    await fast.subscribe("firehose")
    publisher = await connect(gw, "publisher")
    payload = "x" * 16_000
    sent = 0
    # Publish in lockstep with the fast reader until the gateway gives up on the slow one.
    while gw.stats()["slow_consumer_closes"] == 0:
        assert sent < 5000, "the slow consumer was never detected"
        await publisher.publish("firehose", payload)
        sent += 1
        msg = await fast.take_type("message")
        assert msg["offset"] == sent
    # Others are unaffected after the close.
    await publisher.publish("firehose", "after")
    assert (await fast.take(lambda f: f.get("data") == "after"))["offset"] == sent + 1

    # The slow client, once it reads again, sees a gap-free prefix and then 4008.
    offsets = []
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(slow.recv(), 10))
            if frame["type"] == "message":
                offsets.append(frame["offset"])
    except Exception as exc:  # ConnectionClosed ends the stream
        assert type(exc).__name__.startswith("ConnectionClosed"), exc
    assert slow.protocol.close_rcvd is not None and slow.protocol.close_rcvd.code == 4008
    assert offsets == list(range(1, len(offsets) + 1)) and len(offsets) <= sent
    assert gw.stats()["slow_consumer_closes"] == 1


async def test_idle_client_is_closed_with_4009(make_gateway, connect) -> None:
    gw = await make_gateway(heartbeat_timeout=0.3, ping_interval=None)
    idle = await connect(gw, "idle")
    watcher = await connect(gw, "watcher")
    await idle.subscribe("room", presence=True)
    await watcher.subscribe("room", presence=True)

    async def chatty() -> None:
        # The watcher keeps talking, so only the idle client times out.
        while True:
            await watcher.ok({"type": "ping"})
            await asyncio.sleep(0.05)

    task = asyncio.create_task(chatty())
    try:
        code, reason = await idle.closed()
        assert (code, reason) == (4009, "Idle timeout")
        leave = await asyncio.wait_for(_leave_of(watcher, idle.client_id), 10)
        assert leave["member"]["userId"] == "idle"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gw.stats()["idle_closes"] == 1


async def _leave_of(client, client_id: str) -> dict:
    while True:
        for frame in client.frames:
            if frame.get("type") == "presence_leave" and frame["member"]["clientId"] == client_id:
                return frame
        await asyncio.sleep(0.02)
