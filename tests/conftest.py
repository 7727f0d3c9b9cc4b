"""Shared fixtures: a real gateway on 127.0.0.1 (free port) and raw WebSocket clients.

``gateway`` is a :class:`rtwidgets.gateway.Gateway` started on the test's own event
loop and stopped afterwards; ``make_gateway(**config_overrides)`` starts more (or
differently configured) ones. ``connect(gw, user)`` opens a raw
``websockets`` client (not the rtwidgets client) with a token for ``user`` and returns
a :class:`RawClient` that has already read the ``connected`` frame.

Everything synchronises on frames and conditions with generous timeouts; no test
relies on a fixed sleep or on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from rtwidgets.gateway import Gateway

TIMEOUT = 10.0  # generous: a condition that does not hold within this is a failure, not slowness

Frame = dict[str, Any]
Predicate = Callable[[Frame], bool]


class RawClient:
    """A raw WebSocket client speaking JSON frames, for gateway tests.

    ``frames`` keeps every frame received (in order). :meth:`take` removes and returns
    the first not-yet-taken frame matching a predicate, waiting for it if needed;
    frames it passes over stay available to later ``take`` calls.
    """

    _ids = itertools.count(1)

    def __init__(self, ws: ClientConnection, connected: Frame) -> None:
        self.ws = ws
        self.connected = connected
        self.client_id: str = connected["clientId"]
        self.user_id: str = connected["userId"]
        self.frames: list[Frame] = []
        self.inbox: list[Frame] = []

    async def send(self, frame: Frame | str | bytes) -> None:
        """Send a frame (a dict is JSON-encoded; str/bytes are sent as they are)."""
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def _read(self) -> Frame:
        frame = json.loads(await self.ws.recv())
        self.frames.append(frame)
        return frame

    async def take(self, predicate: Predicate = lambda f: True, timeout: float = TIMEOUT) -> Frame:
        """The first untaken frame matching ``predicate``; fails the test after ``timeout``."""
        for i, frame in enumerate(self.inbox):
            if predicate(frame):
                del self.inbox[i]
                return frame

        async def wait() -> Frame:
            while True:
                frame = await self._read()
                if predicate(frame):
                    return frame
                self.inbox.append(frame)

        return await asyncio.wait_for(wait(), timeout)

    async def take_type(self, mtype: str, timeout: float = TIMEOUT) -> Frame:
        """The first untaken frame of type ``mtype``."""
        return await self.take(lambda f: f.get("type") == mtype, timeout)

    async def request(self, frame: Frame, timeout: float = TIMEOUT) -> tuple[Frame, list[Frame]]:
        """Send ``frame`` with a fresh ``_id``; return its ack/error and every frame received
        after sending and before that answer (those stay available to :meth:`take`)."""
        msg_id = next(self._ids)
        mark = len(self.frames)
        await self.send({**frame, "_id": msg_id})
        answer = await self.take(
            lambda f: f.get("type") in ("ack", "error") and f.get("id") == msg_id, timeout
        )
        index = next(i for i in range(mark, len(self.frames)) if self.frames[i] is answer)
        return answer, self.frames[mark:index]

    async def ok(self, frame: Frame, timeout: float = TIMEOUT) -> Frame:
        """Like :meth:`request` but the answer must be an ack; returns it."""
        answer, _ = await self.request(frame, timeout)
        assert answer["type"] == "ack", answer
        return answer

    async def subscribe(self, channel: str, **options: Any) -> tuple[Frame, list[Frame]]:
        """Subscribe and wait for the ack; returns ``(ack, frames before it)``."""
        answer, before = await self.request({"type": "subscribe", "channel": channel, "options": options})
        assert answer["type"] == "ack", answer
        return answer, before

    async def publish(self, channel: str, data: Any, **fields: Any) -> Frame:
        """Publish and wait for the ack; returns the ack."""
        return await self.ok({"type": "publish", "channel": channel, "data": data, **fields})

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str]:
        """Wait for the server to close; return ``(code, reason)``. Frames read meanwhile are kept."""

        async def drain() -> None:
            try:
                while True:
                    self.inbox.append(await self._read())
            except ConnectionClosed:
                return

        await asyncio.wait_for(drain(), timeout)
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    async def close(self) -> None:
        await self.ws.close()


async def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    """A websockets client connection with test-friendly defaults (no keepalive)."""
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("open_timeout", TIMEOUT)
    return await ws_connect(url, **kwargs)


@pytest.fixture
async def raw_ws() -> AsyncIterator[Callable[..., Awaitable[ClientConnection]]]:
    """Factory: ``await raw_ws(url, **connect_kwargs)`` -> websockets client, closed at teardown."""
    opened: list[ClientConnection] = []

    async def factory(url: str, **kwargs: Any) -> ClientConnection:
        ws = await open_ws(url, **kwargs)
        opened.append(ws)
        return ws

    yield factory
    for ws in opened:
        await ws.close()


@pytest.fixture
async def make_gateway() -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """Factory: ``await make_gateway(**overrides)`` starts a gateway; all are stopped at teardown."""
    started: list[Gateway] = []

    async def factory(**kwargs: Any) -> Gateway:
        gw = Gateway("127.0.0.1", 0, **kwargs)
        await gw.start_async()
        started.append(gw)
        return gw

    yield factory
    for gw in reversed(started):
        await gw.stop_async()


@pytest.fixture
async def gateway(make_gateway: Callable[..., Awaitable[Gateway]]) -> Gateway:
    """A gateway with default limits on a free 127.0.0.1 port."""
    return await make_gateway()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[RawClient]]]:
    """Factory: ``await connect(gw, "alice", **token_kwargs)`` -> :class:`RawClient`.

    ``token=`` overrides the token (``None`` in ``token_kwargs`` is not special). The
    clients are closed at teardown.
    """
    clients: list[RawClient] = []

    async def factory(
        gw: Gateway, user: str = "alice", *, token: str | None = None, **token_kwargs: Any
    ) -> RawClient:
        tok = token if token is not None else gw.token(user, **token_kwargs)
        ws = await open_ws(f"{gw.url}/?token={tok}")
        connected = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert connected["type"] == "connected", connected
        client = RawClient(ws, connected)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()
