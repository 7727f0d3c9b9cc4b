"""The gateway's fast paths into websockets' internals: the connection class and the fan-out write.

Kept apart from the rest of the gateway because this is the only module that relies on how
websockets works inside (its ``protocol.writes`` staging list, ``send_in_progress``, the
transport's flow-control callbacks) rather than on its public API: a websockets upgrade is
checked here, and ``tests/gateway/test_fast_paths.py`` checks it.

Rules of this module:

* :func:`write_frame` writes the same serialized frame to every connection; valid only when no
  extension (compression) is negotiated and websockets' DEBUG frame log is off (the caller
  checks both, and uses ``websockets.broadcast`` otherwise).
* A :class:`GatewayConnection` reports to the gateway's backlog set exactly while its transport
  is above its high-water mark, so a slow-consumer check only looks at those.
* Nothing here knows about sessions: a connection carries its authenticated ``client_id`` (a
  plain string), so this module imports no other gateway module.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

__all__ = ["WRITE_LIMIT", "GatewayConnection", "write_frame"]

# websockets' default write_limit (high-water mark of each transport's buffer).
WRITE_LIMIT = 2**15


class GatewayConnection(ServerConnection):
    """A websockets server connection that remembers when it last received bytes and
    reports when its transport is backlogged.

    ``backlog`` (set by the gateway once the client is authenticated) is the gateway's
    set of connections whose transport is above its high-water mark: asyncio calls
    ``pause_writing`` / ``resume_writing`` (flow control) when the unsent bytes cross
    the marks, and websockets sets the marks from ``write_limit``. ``client_id`` is the
    id of its session once authenticated (None before).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_id: str | None = None
        self.last_seen = self.loop.time()
        self.backlog: set[GatewayConnection] | None = None

    def data_received(self, data: bytes) -> None:
        # Any bytes (frames, pongs) prove the peer alive; cheaper than a per-frame hook.
        self.last_seen = self.loop.time()
        super().data_received(data)

    def track_backlog(self, backlog: set[GatewayConnection]) -> None:
        """Report to ``backlog`` from now on (including a backlog that already exists)."""
        self.backlog = backlog
        if self.paused:
            backlog.add(self)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.backlog is not None:
            self.backlog.add(self)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.backlog is not None:
            self.backlog.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.backlog is not None:
            self.backlog.discard(self)


def write_frame(connections: set[GatewayConnection], data: bytes) -> None:
    """Write one text frame to every open connection, serialized once.

    Equivalent to ``websockets.broadcast(connections, data, text=True)`` without
    per-connection framing, valid only when no extension (compression) is negotiated:
    server frames are unmasked, so the bytes are the same for every client. Like
    ``broadcast`` it skips connections that are not OPEN or in the middle of a fragmented
    send, and logs (does not raise) a failed write. websockets keeps no per-frame state
    for outgoing data frames besides the ``protocol.writes`` staging list, which is
    flushed first so the order of writes is preserved.
    """
    wire = Frame(Opcode.TEXT, data).serialize(mask=False)
    for conn in connections:
        proto = conn.protocol
        if proto.state is not State.OPEN or conn.send_in_progress is not None:
            continue
        try:
            if proto.writes:  # never expected between callbacks; keep websockets' order if so
                conn.send_data()
            conn.transport.write(wire)
        except Exception as exc:
            conn.logger.warning("skipped broadcast: failed to write message: %s", exc)
