"""A deliberately small WebSocket client (asyncio Protocol) for the load generator.

Why not the ``websockets`` client: one load-generator process has to receive as many
frames per second as the server under test sends, on the other of two cores. A full client
library spends several times the server's per-frame cost on receiving, so every server
would measure the same (the load generator's) speed. This client does only what the
benchmarks need and the same for every server: an RFC 6455 handshake without extensions
(so never compression), masked text frames out, unmasked frames in, pong on ping, close.

Contract: ``on_text(client, payload, recv_ns)`` is called once per complete text message,
with ``recv_ns`` = ``time.monotonic_ns()`` taken when its bytes were read (before any
parsing, so parsing cost does not inflate latency figures). Protocol errors close the
connection and are recorded in ``error``; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable

__all__ = ["HandshakeError", "WSClient", "open_client"]

TextHandler = Callable[["WSClient", bytes, int], None]


class HandshakeError(ConnectionError):
    """The server did not answer the upgrade with ``101 Switching Protocols``."""


class WSClient(asyncio.Protocol):
    """One client connection. Create with :func:`open_client`."""

    def __init__(self, host: str, port: int, path: str, on_text: TextHandler) -> None:
        self.host = host
        self.port = port
        self.path = path
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.close_code: int | None = None
        self.error: str | None = None
        self._handshaken = False
        self._buf = b""
        self._fragments: list[bytes] = []
        self._mask = os.urandom(4)
        self._mask_int_cache: dict[int, int] = {}
        # Scenario state hangs off the connection (cheaper than dict lookups per frame).
        self.user: object = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if self._buf:
            data = self._buf + data
            self._buf = b""
        if not self._handshaken:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buf = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                self._fail(f"handshake refused: {status.decode(errors='replace')}", HandshakeError)
                return
            self._handshaken = True
            if not self.opened.done():
                self.opened.set_result(None)
            data = data[end + 4 :]
        self._parse(data, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost before the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    # ------------------------------------------------------------------ frames

    def _parse(self, data: bytes, now: int) -> None:
        pos = 0
        n = len(data)
        on_text = self.on_text
        while n - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1]
            if length & 0x80:
                self._fail("server sent a masked frame")
                return
            hdr = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                hdr = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                hdr = 10
            end = pos + hdr + length
            if end > n:
                break
            payload = data[pos + hdr : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == 1 and b0 & 0x80:
                on_text(self, payload, now)
            elif opcode in (0, 1, 2):
                self._fragments.append(payload)
                if b0 & 0x80:
                    whole, self._fragments = b"".join(self._fragments), []
                    on_text(self, whole, now)
            elif opcode == 9:
                self._send_frame(0xA, payload)
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._send_frame(0x8, payload[:2])
                if self.transport is not None:
                    self.transport.close()
                return
        if pos < n:
            self._buf = data[pos:]

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        n = len(payload)
        if n < 126:
            header = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        if n:
            # XOR with the repeated mask as one big integer: fast for the small frames we send.
            mask_int = self._mask_int_cache.get(n)
            if mask_int is None:
                mask_int = int.from_bytes((self._mask * (n // 4 + 1))[:n], "little")
                if len(self._mask_int_cache) < 64:
                    self._mask_int_cache[n] = mask_int
            payload = (int.from_bytes(payload, "little") ^ mask_int).to_bytes(n, "little")
        transport.write(header + self._mask + payload)

    # ------------------------------------------------------------------ API

    def send_text(self, payload: bytes) -> None:
        """Send one text frame (UTF-8 bytes). Silently a no-op once the socket is closing."""
        self._send_frame(0x1, payload)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a network failure)."""
        if self.transport is not None:
            self.transport.abort()

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake."""
        self._send_frame(0x8, code.to_bytes(2, "big"))

    def stop_reading(self) -> None:
        """Stop reading the socket: the kernel buffers fill and the server sees a slow consumer."""
        if self.transport is not None:
            self.transport.pause_reading()

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and not self.closed.done()

    def _fail(self, reason: str, exc_type: type[Exception] = ConnectionError) -> None:
        self.error = reason
        if not self.opened.done():
            self.opened.set_exception(exc_type(reason))
        if self.transport is not None:
            self.transport.abort()


async def open_client(
    host: str,
    port: int,
    path: str,
    on_text: TextHandler,
    timeout: float = 30.0,
    on_created: Callable[[WSClient], None] | None = None,
) -> WSClient:
    """Connect and complete the WebSocket handshake; raise on refusal or timeout.

    ``on_created(client)`` runs before any byte is received (frames can arrive in the
    same read as the handshake response, so callers learn their client object first).
    """
    loop = asyncio.get_running_loop()

    def factory() -> WSClient:
        client = WSClient(host, port, path, on_text)
        if on_created is not None:
            on_created(client)
        return client

    _, client = await asyncio.wait_for(loop.create_connection(factory, host, port), timeout)
    await asyncio.wait_for(asyncio.shield(client.opened), timeout)
    return client
