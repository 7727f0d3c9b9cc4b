"""The syscall floor: the least work a Python process can do to fan a message out.

``python -m benchmarks.servers floor [--redis URL]`` runs :func:`serve_floor`. It speaks the
``raw`` server's wire format (see :mod:`benchmarks.servers`) over WebSocket, but with no
library and no event loop: one ``select.epoll`` loop over non-blocking sockets, a
hand-written handshake, and for every publish ONE pre-framed byte string written with a
bare ``socket.send`` to each subscriber (buffered only when the kernel refuses part of
it). With ``--redis`` every publish is one Redis ``PUBLISH`` written as RESP bytes on a
plain socket, and one ``PSUBSCRIBE`` socket relays every channel back (RESP encoded and
parsed by ``rtwidgets.gateway.brokers.resp``). No auth, validation, history, limits or keepalive.

Why it exists: on a shared 2-vCPU VM, the latency and throughput goals must be read
against what the kernel itself costs there (a loopback ``send`` that wakes another
process, an idle CPU waking up). This server measures that cost with the same load
generator in the same run, so "rtwidgets / floor" says how much the gateway adds.
Only the benchmark's own load generator is expected to talk to it (frames are assumed
well-formed and small; a malformed one closes that connection).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import select
import signal
import socket
from typing import Any
from urllib.parse import urlsplit

import orjson

from rtwidgets.gateway.brokers.resp import RespError, RespParser, encode_command

__all__ = ["serve_floor"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_PREFIX = b"floorbench:"
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked server frame (FIN set)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


class _Conn:
    __slots__ = ("channels", "inbuf", "open", "out", "sock", "upgraded")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.out = bytearray()  # what the kernel has not accepted yet
        self.upgraded = False
        self.open = True
        self.channels: list[bytes] = []


class FloorServer:
    """The epoll loop. Create, then :meth:`run` until :meth:`stop` (a signal handler)."""

    def __init__(self, host: str, redis_url: str | None) -> None:
        self.ep = select.epoll()
        self.listener = socket.create_server((host, 0), backlog=4096)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.ep.register(self.listener.fileno(), _IN)
        self.conns: dict[int, _Conn] = {}
        self.rooms: dict[bytes, list[_Conn]] = {}
        self.running = True
        self.redis_pub: _Conn | None = None
        self.redis_sub: _Conn | None = None
        if redis_url is not None:
            parts = urlsplit(redis_url)
            addr = (parts.hostname or "127.0.0.1", parts.port or 6379)
            self.redis_pub = self._redis_conn(addr)
            self.redis_sub = self._redis_conn(addr)
            self._send(self.redis_sub, encode_command(b"PSUBSCRIBE", _PREFIX + b"*"))
        # RESP parsing is not what the floor measures: the broker's own sans-I/O parser.
        self._pub_replies = RespParser()
        self._sub_pushes = RespParser()

    def _redis_conn(self, addr: tuple[str, int]) -> _Conn:
        sock = socket.create_connection(addr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn = _Conn(sock)
        conn.upgraded = True
        self.conns[sock.fileno()] = conn
        self.ep.register(sock.fileno(), _IN)
        return conn

    def stop(self, *_: Any) -> None:
        self.running = False

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        listen_fd = self.listener.fileno()
        while self.running:
            for fd, events in self.ep.poll(0.2):
                if fd == listen_fd:
                    self._accept()
                    continue
                conn = self.conns.get(fd)
                if conn is None:
                    continue
                if events & _OUT:
                    self._flush(conn)
                if events & (_IN | select.EPOLLHUP | select.EPOLLERR):
                    self._read(conn)
        for conn in list(self.conns.values()):
            self._close(conn)
        self.listener.close()
        self.ep.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns[sock.fileno()] = _Conn(sock)
            self.ep.register(sock.fileno(), _IN)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        buf = conn.inbuf + data if conn.inbuf else data
        try:
            if conn is self.redis_sub:
                self._on_redis_sub(data)
            elif conn is self.redis_pub:
                self._on_redis_replies(data)
            elif not conn.upgraded:
                conn.inbuf = self._handshake(conn, buf)
            else:
                conn.inbuf = self._on_frames(conn, buf)
        except (ValueError, KeyError, orjson.JSONDecodeError):
            self._close(conn)

    # ------------------------------------------------------------------ writing

    def _send(self, conn: _Conn, data: bytes) -> None:
        if not conn.open:
            return
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return
        if sent < len(data):
            conn.out += data[sent:]
            self.ep.modify(conn.sock.fileno(), _IN | _OUT)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        del conn.out[:sent]
        if not conn.out:
            self.ep.modify(conn.sock.fileno(), _IN)

    def _fan_out(self, channel: bytes, wire: bytes) -> None:
        # The floor's hot path: one send() syscall per subscriber, nothing else.
        send = self._send
        for conn in self.rooms.get(channel, ()):
            send(conn, wire)

    def _close(self, conn: _Conn) -> None:
        if not conn.open:
            return
        conn.open = False
        fd = conn.sock.fileno()
        self.conns.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(fd)
        for channel in conn.channels:
            room = self.rooms.get(channel)
            if room is not None and conn in room:
                room.remove(conn)
        conn.sock.close()

    # ------------------------------------------------------------------ WebSocket

    def _handshake(self, conn: _Conn, buf: bytes) -> bytes:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > 16384:
                raise ValueError("request head too large")
            return buf
        key = None
        for line in buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if key is None:
            raise ValueError("not a WebSocket upgrade")
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self._send(
            conn,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n",
        )
        conn.upgraded = True
        return self._on_frames(conn, buf[end + 4 :])

    def _on_frames(self, conn: _Conn, buf: bytes) -> bytes:
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, hdr = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if not b1 & 0x80:
                raise ValueError("client frame not masked")
            start = pos + hdr + 4
            if start + length > n:
                break
            mask = buf[pos + hdr : start]
            body = buf[start : start + length]
            pos = start + length
            mask_int = int.from_bytes((mask * (length // 4 + 1))[:length], "little")
            payload = (int.from_bytes(body, "little") ^ mask_int).to_bytes(length, "little")
            opcode = b0 & 0x0F
            if opcode == 0x1:
                self._on_text(conn, payload)
            elif opcode == 0x9:
                self._send(conn, _frame(payload, 0xA))
            elif opcode == 0x8:
                self._send(conn, _frame(payload[:2], 0x8))
                self._close(conn)
                return b""
        return buf[pos:]

    def _on_text(self, conn: _Conn, payload: bytes) -> None:
        msg = orjson.loads(payload)
        kind = msg["type"]
        channel = msg["channel"].encode()
        if kind == "publish":
            frame = orjson.dumps({"type": "message", "channel": msg["channel"], "data": msg["data"]})
            if self.redis_pub is not None:
                self._send(self.redis_pub, encode_command(b"PUBLISH", _PREFIX + channel, frame))
            else:
                self._fan_out(channel, _frame(frame))
        elif kind == "subscribe":
            self.rooms.setdefault(channel, []).append(conn)
            conn.channels.append(channel)
            self._send(conn, _frame(orjson.dumps({"type": "ack", "id": msg.get("_id")})))

    # ------------------------------------------------------------------ Redis

    def _on_redis_replies(self, data: bytes) -> None:
        for reply in self._pub_replies.feed(data):
            if isinstance(reply, RespError):
                raise ValueError(f"Redis refused a PUBLISH: {reply}")

    def _on_redis_sub(self, data: bytes) -> None:
        for item in self._sub_pushes.feed(data):
            if isinstance(item, list) and item and item[0] == b"pmessage":
                self._fan_out(item[2][len(_PREFIX) :], _frame(item[3]))


def serve_floor(host: str, redis_url: str | None, ready: Any) -> None:
    """Run the floor server until SIGTERM/SIGINT; call ``ready(port)`` once it listens."""
    server = FloorServer(host, redis_url)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    ready(server.port)
    try:
        server.run()
    except InterruptedError as exc:  # pragma: no cover - PEP 475 retries EINTR
        if exc.errno != errno.EINTR:
            raise
