"""The gateway's fast paths behave exactly like the slow ones they replace.

* fan-out writes one pre-serialized frame to every subscriber (compression off) or uses
  ``websockets.broadcast`` (compression on): same frames either way, every size class
  of the WebSocket length field;
* the handshake headers are dropped once the token is verified;
* only connections whose transport is above its high-water mark are checked against the
  outbound limit (``pause_writing`` / ``resume_writing`` tracking);
* permission answers are memoised per session; the depth walk is skipped only when the
  frame cannot be too deep.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from rtwidgets import protocol
from rtwidgets.auth import Claims
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.ratelimit import TokenBucket
from rtwidgets.gateway.session import CAN_CACHE_SIZE, Session
from rtwidgets.protocol import ErrorCode, ProtocolError

TIMEOUT = 10.0


async def _until(predicate: Any, timeout: float = TIMEOUT) -> None:
    """Wait (polling the event loop) until ``predicate()`` is true; fail after ``timeout``."""

    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


# ---------------------------------------------------------------------- fan-out framing


# 7-bit, 16-bit and 64-bit payload length encodings of a WebSocket frame, and non-ASCII text.
PAYLOADS = ["small", "m" * 300, "L" * 70_000, "héllo ✓ " * 20]


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
async def test_every_subscriber_gets_every_frame_intact(make_gateway, connect, compression) -> None:
    gw: Gateway = await make_gateway(compression=compression, max_message_bytes=200_000)
    subscribers = [await connect(gw, f"sub{i}") for i in range(5)]
    for sub in subscribers:
        await sub.subscribe("fan")
    publisher = await connect(gw, "pub")
    for payload in PAYLOADS:
        await publisher.publish("fan", payload)
    for sub in subscribers:
        got = [(await sub.take_type("message"))["data"] for _ in PAYLOADS]
        assert got == PAYLOADS
    assert gw.stats()["deliveries"] == len(subscribers) * len(PAYLOADS)


async def test_closing_subscriber_is_skipped_and_others_still_receive(make_gateway, connect) -> None:
    gw: Gateway = await make_gateway()
    leaving = await connect(gw, "leaving")
    staying = await connect(gw, "staying")
    await leaving.subscribe("room")
    await staying.subscribe("room")
    publisher = await connect(gw, "pub")
    await leaving.ws.close()
    # The gateway may still route to it while the close is in flight: no error, no crash.
    for i in range(20):
        await publisher.publish("room", i)
    assert [(await staying.take_type("message"))["data"] for _ in range(20)] == list(range(20))


# ---------------------------------------------------------------------- handshake headers


async def test_handshake_headers_are_dropped_after_authentication(gateway: Gateway, connect) -> None:
    client = await connect(gateway, "alice")
    (session,) = gateway._sessions.values()
    conn = session.conn
    assert conn.request is not None and conn.response is not None  # websockets still has them
    assert len(conn.request.headers) == 0 and len(conn.response.headers) == 0
    # The connection works as before.
    await client.subscribe("room")
    await client.publish("room", "still here")
    assert (await client.take_type("message"))["data"] == "still here"


# ---------------------------------------------------------------------- backlog tracking


async def _stalled_reader(gw: Gateway, raw_ws: Any, user: str) -> Any:
    """A client with a tiny receive window whose websockets client stops reading once its
    one-message queue is full, so the gateway's transport buffer grows."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gw.port))
    sock.setblocking(False)
    ws = await raw_ws(f"{gw.url}/?token={gw.token(user)}", sock=sock, max_queue=1)
    assert json.loads(await ws.recv())["type"] == "connected"
    await ws.send(json.dumps({"type": "subscribe", "channel": "firehose", "_id": 1}))
    assert json.loads(await ws.recv())["type"] == "ack"
    return ws


async def test_backlogged_connection_is_tracked_until_it_drains(make_gateway, connect, raw_ws) -> None:
    # A high outbound limit: the reader is backlogged (above the 32 KiB high-water mark)
    # but never slow enough to be closed.
    gw: Gateway = await make_gateway(
        outbound_limit_bytes=64 * 1024 * 1024, publish_rate=1e6, publish_burst=10**6
    )
    reader = await _stalled_reader(gw, raw_ws, "reader")
    publisher = await connect(gw, "pub")
    sent = 0
    while not gw._backlogged:
        assert sent < 2000, "the stalled reader never passed the high-water mark"
        await publisher.publish("firehose", "x" * 16_000)
        sent += 1
    (conn,) = gw._backlogged
    assert conn.paused and conn.client_id is not None and gw._sessions[conn.client_id].user_id == "reader"
    # Reading again drains the buffer: asyncio calls resume_writing, which untracks it.
    received = 0
    while received < sent:
        frame = json.loads(await asyncio.wait_for(reader.recv(), TIMEOUT))
        if frame["type"] == "message":
            received += 1
    await _until(lambda: not gw._backlogged)
    assert gw.stats()["slow_consumer_closes"] == 0


@pytest.mark.parametrize("limit", [8 * 1024, 256 * 1024], ids=["below-high-water", "above-high-water"])
async def test_slow_consumer_is_detected_for_any_outbound_limit(make_gateway, connect, raw_ws, limit) -> None:
    # Below websockets' 32 KiB default high-water mark the gateway lowers the mark, or a
    # connection could exceed the limit without ever being paused (and so never checked).
    gw: Gateway = await make_gateway(outbound_limit_bytes=limit, publish_rate=1e6, publish_burst=10**6)
    slow = await _stalled_reader(gw, raw_ws, "slow")
    publisher = await connect(gw, "pub")
    sent = 0
    while gw.stats()["slow_consumer_closes"] == 0:
        assert sent < 5000, "the slow consumer was never detected"
        await publisher.publish("firehose", "y" * 4000)
        sent += 1
    with pytest.raises(Exception) as closed:
        while True:
            await asyncio.wait_for(slow.recv(), TIMEOUT)
    assert type(closed.value).__name__.startswith("ConnectionClosed")
    assert slow.protocol.close_rcvd is not None and slow.protocol.close_rcvd.code == 4008
    await _until(lambda: not gw._backlogged)  # closed connections leave the set


# ---------------------------------------------------------------------- per-publish checks


def _session(claims: Claims) -> Session:
    return Session(client_id="c", claims=claims, conn=None, bucket=TokenBucket(1.0, 1, 0.0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "patterns",
    [
        {"subscribe": ("room:*",), "publish": ("room:1",), "presence": ()},
        {"subscribe": ("*",), "publish": ("room:1", "other"), "presence": ("*",)},
        {"subscribe": ("room:[12]*",)},  # no publish/presence entry at all
    ],
    ids=["patterns", "star", "missing-actions"],
)
def test_session_can_matches_claims_and_stays_bounded(patterns: dict[str, tuple[str, ...]]) -> None:
    claims = Claims("u", None, patterns)
    session = _session(claims)
    channels = [f"room:{i}" for i in range(CAN_CACHE_SIZE * 3)] + ["other", "room:1", "*", "a b"]
    for _ in range(2):  # second pass answers from the cache where it can
        for channel in channels:
            for action in ("subscribe", "publish", "presence"):
                assert session.can(action, channel) == claims.can(action, channel), (action, channel)
    assert session._can is None or len(session._can) <= CAN_CACHE_SIZE


def _nested(containers: int, leaf: Any) -> bytes:
    value = leaf
    for _ in range(containers - 1):  # the frame object itself is the outermost container
        value = [value]
    return json.dumps({"type": "publish", "channel": "c", "data": value}).encode()


@pytest.mark.parametrize("as_str", [False, True], ids=["bytes", "str"])
def test_depth_limit_is_exact_with_the_bracket_shortcut(as_str: bool) -> None:
    limit = protocol.MAX_NESTING

    def parse(raw: bytes) -> dict[str, Any]:
        return protocol.parse_client_frame(raw.decode() if as_str else raw)

    # A scalar inside MAX_NESTING - 1 containers is MAX_NESTING levels deep: accepted (the
    # walk is skipped); so are MAX_NESTING containers, the innermost empty (the walk runs).
    assert parse(_nested(limit - 1, 1))["type"] == "publish"
    assert parse(_nested(limit - 1, []))["type"] == "publish"
    # MAX_NESTING containers around a scalar (exactly MAX_NESTING brackets) is one too deep.
    for raw in (_nested(limit, 1), _nested(limit, []), _nested(limit + 50, 1)):
        with pytest.raises(ProtocolError) as refused:
            parse(raw)
        assert refused.value.code is ErrorCode.TOO_DEEP
    # Brackets inside strings only make the walk run; they never make a frame too deep.
    noisy = json.dumps({"type": "publish", "channel": "c", "data": "[{" * 100}).encode()
    assert parse(noisy)["data"] == "[{" * 100
