"""Client side of each server's wire format, and the benchmark payload.

Every published message carries a 100-character string payload that starts with a marker
``#SSSSSSSSSS:TTTTTTTTTTTTTTTTTTT:`` (sequence number, ``time.monotonic_ns()`` at publish).
CLOCK_MONOTONIC is system-wide on Linux, so a receiver in another process measures
publish -> deliver latency directly. None of the three envelopes contains ``#`` anywhere
else, so a receiver finds the marker with one ``bytes.find`` instead of parsing JSON.

A :class:`Peer` is one benchmark client: a :class:`~benchmarks.wsclient.WSClient` plus the
flavor's session logic (ready signal, acks, pings, rtwidgets history). Deliveries go to a
``sink`` object with ``deliver(peer, seq, t_ns, recv_ns)``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import orjson

from .wsclient import WSClient, open_client

__all__ = ["FLAVORS", "PAYLOAD_SIZE", "Peer", "make_payload", "parse_marker"]

PAYLOAD_SIZE = 100
_HEAD = 32  # len("#" + 10 digits + ":" + 19 digits + ":")
_PAD = "x" * (PAYLOAD_SIZE - _HEAD)


def make_payload(seq: int, t_ns: int) -> str:
    """The 100-character payload of message ``seq`` published at ``t_ns``."""
    return f"#{seq:010d}:{t_ns:019d}:{_PAD}"


def parse_marker(text: bytes | str, at: int = -1) -> tuple[int, int]:
    """``(seq, t_ns)`` from a payload or a frame containing one (``at``: index of ``#``)."""
    i = text.find(b"#" if isinstance(text, bytes) else "#") if at < 0 else at
    if i < 0:
        raise ValueError("no benchmark marker in frame")
    return int(text[i + 1 : i + 11]), int(text[i + 12 : i + 31])


class Sink(Protocol):
    def deliver(self, peer: Peer, seq: int, t_ns: int, recv_ns: int) -> None: ...


class Flavor:
    """How one server's protocol looks from a client."""

    name = ""

    def path(self, token: str | None) -> str:
        return "/"

    def subscribe_frame(self, channel: str, rid: int, resume: dict[str, Any] | None) -> bytes:
        return orjson.dumps({"type": "subscribe", "channel": channel, "_id": rid})

    def publish_frame(self, channel: str, data: str) -> bytes:
        return orjson.dumps({"type": "publish", "channel": channel, "data": data})

    def on_open(self, peer: Peer) -> None:
        peer.ready.set_result(None)

    def on_control(self, peer: Peer, payload: bytes, recv_ns: int) -> None:
        msg = orjson.loads(payload)
        kind = msg.get("type")
        if kind == "ack":
            peer.resolve(msg.get("id"), msg)
        elif kind == "error":
            peer.reject(msg.get("id"), f"server error {msg.get('code')}: {msg.get('reason')}")
        elif kind == "connected":
            if not peer.ready.done():
                peer.ready.set_result(None)
        elif kind == "history":
            self.on_history(peer, msg, recv_ns)

    def on_history(self, peer: Peer, msg: dict[str, Any], recv_ns: int) -> None:
        raise RuntimeError(f"{self.name} server sent a history frame")


class RawFlavor(Flavor):
    name = "raw"


class FloorFlavor(RawFlavor):
    """The syscall floor (:mod:`benchmarks.floor`) speaks the raw server's frames."""

    name = "floor"


class RtwidgetsFlavor(Flavor):
    name = "rtwidgets"

    def path(self, token: str | None) -> str:
        return f"/?token={quote(token or '')}"

    def subscribe_frame(self, channel: str, rid: int, resume: dict[str, Any] | None) -> bytes:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel, "_id": rid}
        if resume:
            frame["options"] = resume
        return orjson.dumps(frame)

    def on_open(self, peer: Peer) -> None:
        pass  # ready when the ``connected`` frame arrives

    def on_history(self, peer: Peer, msg: dict[str, Any], recv_ns: int) -> None:
        frames = msg.get("data") or []
        for frame in frames:
            data = frame.get("data")
            if isinstance(data, str) and data.startswith("#"):
                seq, t_ns = parse_marker(data, 0)
                peer.sink.deliver(peer, seq, t_ns, recv_ns)
        if frames:
            peer.last_message = orjson.dumps(frames[-1])


class SocketioFlavor(Flavor):
    """Socket.IO v5 over Engine.IO v4, WebSocket transport only (no HTTP long-polling)."""

    name = "socketio"

    def path(self, token: str | None) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def subscribe_frame(self, channel: str, rid: int, resume: dict[str, Any] | None) -> bytes:
        return b"42" + str(rid).encode() + orjson.dumps(["subscribe", channel])

    def publish_frame(self, channel: str, data: str) -> bytes:
        return b"42" + orjson.dumps(["publish", {"channel": channel, "data": data}])

    def on_open(self, peer: Peer) -> None:
        pass  # ready after Engine.IO open ("0{...}") and Socket.IO connect ("40{...}")

    def on_control(self, peer: Peer, payload: bytes, recv_ns: int) -> None:
        if payload == b"2":  # Engine.IO ping: answer or be dropped after pingTimeout
            peer.ws.send_text(b"3")
        elif payload.startswith(b"43"):
            end = payload.index(b"[")
            peer.resolve(int(payload[2:end]), payload[end:])
        elif payload.startswith(b"40"):
            if not peer.ready.done():
                peer.ready.set_result(None)
        elif payload.startswith(b"0"):
            peer.ws.send_text(b"40")
        elif payload.startswith(b"44"):
            if not peer.ready.done():
                peer.ready.set_exception(ConnectionError(f"socket.io connect refused: {payload[:200]!r}"))
        elif payload.startswith(b"42"):
            raise RuntimeError(f"unexpected socket.io event {payload[:80]!r}")


FLAVORS: dict[str, Flavor] = {
    f.name: f for f in (RtwidgetsFlavor(), RawFlavor(), SocketioFlavor(), FloorFlavor())
}


class Peer:
    """One benchmark client connection (re-openable, for the reconnect storm)."""

    def __init__(self, index: int, flavor: Flavor, url: str, sink: Sink, token: str | None = None) -> None:
        self.index = index
        self.flavor = flavor
        self.url = url
        self.sink = sink
        self.token = token
        self.ws: WSClient = None  # type: ignore[assignment]
        self.ready: asyncio.Future[None] = None  # type: ignore[assignment]
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self.last_message: bytes | None = None
        self.slow = False
        self.errors: list[str] = []
        # Scenario bookkeeping (reconnect storm).
        self.state: Any = None

    async def connect(self, timeout: float = 30.0) -> None:
        parts = urlsplit(self.url)
        self.ready = asyncio.get_running_loop().create_future()

        def created(ws: WSClient) -> None:
            self.ws = ws

        await open_client(
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            self.flavor.path(self.token),
            self._on_text,
            timeout,
            on_created=created,
        )
        self.flavor.on_open(self)
        await asyncio.wait_for(asyncio.shield(self.ready), timeout)

    def _on_text(self, ws: WSClient, payload: bytes, recv_ns: int) -> None:
        if ws is not self.ws:
            return  # a dropped connection's last bytes
        i = payload.find(b"#")
        if i >= 0 and not payload.startswith(b'{"type":"history"'):
            self.last_message = payload
            self.sink.deliver(self, int(payload[i + 1 : i + 11]), int(payload[i + 12 : i + 31]), recv_ns)
        else:
            try:
                self.flavor.on_control(self, payload, recv_ns)
            except Exception as exc:  # recorded and reported, never swallowed
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def request(self, frame_for_id: Any) -> asyncio.Future[Any]:
        """Send ``frame_for_id(rid)`` and return a future for its acknowledgement."""
        rid = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.ws.send_text(frame_for_id(rid))
        return fut

    def subscribe(self, channel: str, resume: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        return self.request(lambda rid: self.flavor.subscribe_frame(channel, rid, resume))

    def publish(self, channel: str, data: str) -> None:
        self.ws.send_text(self.flavor.publish_frame(channel, data))

    def resolve(self, rid: Any, value: Any) -> None:
        fut = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if fut is None:
            self.errors.append(f"ack for unknown request {rid!r}")
        elif not fut.done():
            fut.set_result(value)

    def reject(self, rid: Any, reason: str) -> None:
        fut = self._pending.pop(rid, None) if isinstance(rid, int) else None
        if fut is None:
            self.errors.append(reason)
        elif not fut.done():
            fut.set_exception(RuntimeError(reason))

    def resume_options(self) -> dict[str, Any] | None:
        """rtwidgets resume options from the last message received (None if nothing was)."""
        if self.last_message is None:
            return None
        msg = orjson.loads(self.last_message)
        return {"lastEventId": msg["eventId"], "epoch": msg["epoch"]}
