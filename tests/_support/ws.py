"""Raw WebSocket clients (the ``websockets`` library, no rtwidgets client) for talking to a gateway."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from rtwidgets.auth import issue_token

OPEN_TIMEOUT = 10.0
READ_TIMEOUT = 20.0  # generous bound per frame, not a timing assertion


async def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    """A raw websockets client with test-friendly defaults (no keepalive pings)."""
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("open_timeout", OPEN_TIMEOUT)
    return await ws_connect(url, **kwargs)


async def read_stream(url: str, secret: str, channel: str) -> tuple[str, dict[int, Any]]:
    """``(epoch, {offset: data})`` of every message the gateway at ``url`` retains for ``channel``.

    Subscribes as user ``auditor`` with an unbounded history request and returns the
    ``history`` frame's content: the authoritative stream to compare clients' views with.
    """
    ws = await open_ws(f"{url}/?token={issue_token(secret, 'auditor')}", max_size=None)
    try:
        assert json.loads(await ws.recv())["type"] == "connected"
        sub = {"type": "subscribe", "channel": channel, "_id": 1, "options": {"history": 1_000_000}}
        await ws.send(json.dumps(sub))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), READ_TIMEOUT))
            if frame["type"] == "history":
                return frame["epoch"], {m["offset"]: m["data"] for m in frame["data"]}
    finally:
        await ws.close()
