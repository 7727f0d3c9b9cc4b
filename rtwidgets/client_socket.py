"""One socket of a :class:`~rtwidgets.client.RealtimeConnection`: open, read, write, close.

The connection's socket task (:func:`run_socket`: token, handshake, frames into the core, the
end reported), its writer task (:func:`write_frames`) and the close it is told to do
(:func:`close_socket`). The connection spawns them when its core asks (``OpenSocket``,
``CloseSocket``).

Rules of this module:

* The core decides, this module only moves bytes: every outcome (open failed, opened, a frame,
  closed) is reported to ``conn._core`` with the socket's ``generation``, then ``conn._pump()``
  handles what the core produced.
* The token goes in the ``Authorization`` header, never in the URL, and never into a log
  (errors are passed through :func:`rtwidgets.auth.redact`; websockets logs through a
  redacting logger).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtwidgets.auth import install_redacting_filter, redact
from rtwidgets.core.connection import ConnectionState
from rtwidgets.errors import RealtimeError
from rtwidgets.protocol import CloseCode, ProtocolError, parse_server_frame

if TYPE_CHECKING:  # pragma: no cover - the connection imports this module
    from rtwidgets.client import RealtimeConnection

__all__ = ["close_socket", "current_token", "run_socket", "write_frames"]

# The websockets library logs through this logger (not "websockets.client"), so tokens are redacted.
_ws_log = install_redacting_filter("rtwidgets.client.websockets")


async def current_token(conn: RealtimeConnection) -> str | None:
    """The token for the next attempt: ``conn``'s fixed token, or its ``auth`` callback's answer.

    Raises:
        TypeError: the callback returned something other than a string.
    """
    if conn._auth is None:
        return conn._token
    value = conn._auth()
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str):
        raise TypeError("auth callback must return a token string")
    return value


async def run_socket(conn: RealtimeConnection, generation: int) -> None:
    """Open ``conn``'s socket ``generation``, feed its frames to the core, report its end."""
    core = conn._core
    try:
        token = await current_token(conn)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        ws = await ws_connect(
            conn.url, additional_headers=headers, open_timeout=None, max_size=None, logger=_ws_log
        )
    except asyncio.CancelledError:
        raise
    except InvalidStatus as exc:
        status = exc.response.status_code
        code = int(CloseCode.AUTH_FAILED) if status in (401, 403) else None
        core.on_open_failed(f"HTTP {status}", conn._now(), close_code=code, generation=generation)
        conn._pump()
        return
    except Exception as exc:
        message = redact(f"{type(exc).__name__}: {exc}")  # a token could sit in a user's URL
        core.on_open_failed(message, conn._now(), generation=generation)
        conn._pump()
        return
    if generation != core.generation or core.state is not ConnectionState.CONNECTING:
        await ws.close()  # the core gave up on this attempt meanwhile
        return
    conn._ws = ws
    conn._ws_generation = generation
    conn._opening = None
    outbox: asyncio.Queue[str] = asyncio.Queue()
    conn._outbox = outbox
    writer = conn._spawn(write_frames(ws, outbox))
    core.on_open(conn._now(), generation=generation)
    conn._pump()
    try:
        async for raw in ws:
            try:
                frame = parse_server_frame(raw)
            except ProtocolError as exc:
                conn._report(RealtimeError(f"bad frame from gateway: {exc.reason}", "bad_frame"))
                continue
            core.on_frame(frame, conn._now(), generation=generation)
            conn._pump()
    except ConnectionClosed:
        pass
    finally:
        writer.cancel()
        if conn._outbox is outbox:
            conn._outbox = None
        if conn._ws is ws:
            conn._ws = None
    code = None if ws.close_code is None else int(ws.close_code)
    reason = ws.close_reason or ""
    core.on_close(code, reason, conn._now(), generation=generation)
    conn._pump()


async def write_frames(ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
    """Write the encoded frames put in ``outbox`` to ``ws``, in order, until it closes."""
    try:
        while True:
            data = await outbox.get()
            await ws.send(data)
    except ConnectionClosed:
        pass  # the reader reports the close


async def close_socket(ws: ClientConnection, code: int, reason: str) -> None:
    """Close ``ws``: a handshake for a normal close, an abort when the link is presumed dead."""
    if code == CloseCode.NORMAL:
        ws.close_timeout = 2.0
        await ws.close(code, reason)
    else:
        # The link is presumed dead (heartbeat/open timeout): do not wait for a handshake.
        ws.transport.abort()
