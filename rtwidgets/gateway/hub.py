"""The gateway's shared runtime state: sessions, channel routes, fan-out and writes to clients.

Everything the message handlers, the subscribe catch-up, the reaper and the lifecycle share
lives in one :class:`Hub`, which the :class:`~rtwidgets.gateway.server.Gateway` owns. Those
modules import this one, never each other's owner, so the gateway's modules form no cycle.

Rules of this module:

* Every write to a client is synchronous and never awaits (an already encoded frame,
  written to the transport): a slow client can never stall the fan-out loop or
  another client. Clients whose unsent bytes exceed ``outbound_limit_bytes`` after a
  fan-out are closed with 4008 and recover from history when they reconnect. Only
  connections whose transport passed its high-water mark (asyncio's ``pause_writing``)
  are checked, so the check costs nothing while every client keeps up.
* A channel has a route while any local subscription uses it (live or catching up); the
  broker is attached when the route is made and detached when the last user leaves. A
  detach still in flight is awaited by the next attach of that channel, so it can never
  undo it.
* A subscription catching up gets the channel's frames in its
  :class:`~rtwidgets.core.catchup.CatchUp` instead of the socket; one whose held bytes pass
  ``outbound_limit_bytes`` (a catch-up that never ends) is closed as a slow consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.protocol import State

from rtwidgets import protocol
from rtwidgets.auth import install_redacting_filter
from rtwidgets.protocol import CloseCode, ErrorCode

from .brokers.base import Broker
from .config import GatewayConfig
from .fastpath import GatewayConnection, write_frame
from .metrics import GatewayMetrics
from .session import Session, Subscription

__all__ = ["Hub", "Route", "log", "now_ms", "ws_log"]

log = logging.getLogger("rtwidgets.gateway")

# websockets logs request lines and headers at DEBUG; route them through a redacting logger.
ws_log = install_redacting_filter("rtwidgets.gateway.websockets")


def now_ms() -> int:
    """Wall-clock milliseconds (the protocol's ``serverTime``, ``timestamp``, ``joinedAt``)."""
    return int(time.time() * 1000)


class Route:
    """Local subscribers of one channel: live connections and ones still catching up."""

    __slots__ = ("attaching", "catching", "live")

    def __init__(self, attaching: asyncio.Future[None]) -> None:
        self.live: set[GatewayConnection] = set()
        self.catching: dict[Subscription, GatewayConnection] = {}
        self.attaching = attaching

    def empty(self) -> bool:
        return not self.live and not self.catching


class Hub:
    """Sessions, routes and fan-out of one gateway (see the module rules).

    ``broker`` is read through ``get_broker`` because the gateway makes a Redis broker lazily.
    Methods that touch routes or sockets must run on the gateway's loop.
    """

    def __init__(self, config: GatewayConfig, get_broker: Callable[[], Broker]) -> None:
        self.config = config
        self._get_broker = get_broker
        self.sessions: dict[str, Session] = {}
        self.routes: dict[str, Route] = {}
        self.detaching: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        # Connections whose transport is above its high-water mark (GatewayConnection).
        self.backlogged: set[GatewayConnection] = set()
        self.metrics = GatewayMetrics(self.gauges)

    @property
    def broker(self) -> Broker:
        return self._get_broker()

    # ------------------------------------------------------------------ stats

    def gauges(self) -> dict[str, float]:
        sessions = list(self.sessions.values())
        outbound = 0
        for s in sessions:
            transport = s.conn.transport
            if transport is not None:
                outbound = max(outbound, transport.get_write_buffer_size())
        return {
            "connections": len(sessions),
            "channels": len(self.routes),
            "subscriptions": sum(len(s.subscriptions) for s in sessions),
            "outbound_buffer_max_bytes": outbound,
        }

    # ------------------------------------------------------------------ tasks and closing

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background; the gateway cancels what is left when it stops."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, session: Session, code: int, reason: str) -> None:
        """Close ``session``'s socket with ``code`` (once; later calls do nothing)."""
        if session.closing:
            return
        session.closing = True
        self.stop_feeding(session)
        await session.conn.close(code, reason)

    def stop_feeding(self, session: Session) -> None:
        # Take the connection off every fan-out path at once; full cleanup follows
        # when its handler notices the close.
        conn = session.conn
        for name, sub in session.subscriptions.items():
            route = self.routes.get(name)
            if route is not None:
                route.live.discard(conn)
                route.catching.pop(sub, None)

    async def cleanup(self, session: Session) -> None:
        """Leave every channel of a connection that is gone (errors are logged, not raised)."""
        subs = list(session.subscriptions.values())
        session.subscriptions.clear()
        for sub in subs:
            try:
                await self.leave(session, sub)
            except Exception:
                log.exception("cleanup of channel %r for client %s failed", sub.channel, session.client_id)

    # ------------------------------------------------------------------ writing

    def send(self, conn: ServerConnection, frame: dict[str, Any]) -> None:
        """Write one frame to one client, never awaiting (see the module rules)."""
        # Same non-blocking path as fan-out, so per-connection order is the call order.
        if conn.protocol.state is State.OPEN:
            broadcast((conn,), protocol.encode_bytes(frame), text=True)
        else:
            # The connection is closing or closed (e.g. an ack whose broker call outlived the
            # socket). Nothing stored is lost: the client learns of the loss through the close
            # code, fails or retries its pending ops, and resubscribes with its lastEventId, so
            # stored messages are replayed. Count it so operators can see it happening.
            self.metrics.frames_dropped_closed += 1

    def send_encoded(self, conn: ServerConnection, data: bytes) -> None:
        """Write an already encoded frame to one open client (a frame of the channel stream)."""
        if conn.protocol.state is State.OPEN:
            broadcast((conn,), data, text=True)

    def send_error(
        self,
        conn: ServerConnection,
        code: ErrorCode,
        reason: str,
        msg_id: Any,
        channel: str | None,
        retry_after: float | None = None,
    ) -> None:
        self.metrics.error(code.value)
        self.send(conn, protocol.error_frame(code, reason, msg_id, channel, retry_after))

    def deliver(self, channel: str, frame: dict[str, Any], data: bytes) -> None:
        """Broker listener: write one encoded frame (UTF-8 JSON bytes) to every local subscriber."""
        route = self.routes.get(channel)
        if route is None:
            return
        live = route.live
        if live:
            if self.config.compression is None and not ws_log.isEnabledFor(logging.DEBUG):
                write_frame(live, data)
            else:
                broadcast(live, data, text=True)
            self.metrics.deliveries += len(live)
            backlogged = self.backlogged
            if backlogged:
                limit = self.config.outbound_limit_bytes
                slow = [c for c in backlogged if c.transport.get_write_buffer_size() > limit]
                for conn in slow:
                    self.slow_consumer(conn)
        if route.catching:
            held_limit = self.config.outbound_limit_bytes
            for sub, conn in list(route.catching.items()):
                catchup = sub.catchup
                if catchup is not None:
                    catchup.on_live(frame, data)
                    # A catch-up that never ends (a stuck broker) must not grow without bound.
                    if catchup.held_bytes > held_limit:
                        route.catching.pop(sub, None)
                        self.slow_consumer(conn)

    def slow_consumer(self, conn: GatewayConnection) -> None:
        """Close ``conn`` with 4008 (its unsent or held bytes passed the limit)."""
        session = self.sessions.get(conn.client_id) if conn.client_id is not None else None
        if session is None or session.closing:
            return
        self.metrics.slow_consumer_closes += 1
        # Closing: no need to look at its buffer again after every message.
        self.backlogged.discard(conn)
        log.warning(
            "closing slow consumer %s: %d bytes unsent (limit %d)",
            session.client_id,
            conn.transport.get_write_buffer_size(),
            self.config.outbound_limit_bytes,
        )
        self.spawn(self.close(session, CloseCode.SLOW_CONSUMER, "Slow consumer"))

    # ------------------------------------------------------------------ routes

    def route_for(self, channel: str) -> Route:
        """The channel's route, made (and the broker attach started) if it has none."""
        route = self.routes.get(channel)
        if route is None:
            loop = asyncio.get_running_loop()
            attaching = loop.create_task(self._attach(channel, self.detaching.get(channel)))
            route = self.routes[channel] = Route(attaching)
        return route

    async def _attach(self, channel: str, pending_detach: asyncio.Task[None] | None) -> None:
        # A detach of the previous route may still be in flight: let it land first,
        # otherwise it could undo this attach.
        if pending_detach is not None:
            with contextlib.suppress(Exception):
                await pending_detach
        await self.broker.attach(channel)

    def release_route(self, channel: str, route: Route) -> None:
        """Drop ``route`` if nobody uses it any more, detaching the channel."""
        if not route.empty() or self.routes.get(channel) is not route:
            return
        del self.routes[channel]
        attaching = route.attaching

        async def detach() -> None:
            try:
                with contextlib.suppress(Exception):
                    await attaching
                if channel not in self.routes or self.routes[channel].attaching is not attaching:
                    await self.broker.detach(channel)
            except Exception:
                log.warning("detaching channel %r failed", channel, exc_info=True)
            finally:
                if self.detaching.get(channel) is task:
                    del self.detaching[channel]

        task = asyncio.get_running_loop().create_task(detach())
        self.detaching[channel] = task

    # ------------------------------------------------------------------ leaving

    async def leave(self, session: Session, sub: Subscription) -> None:
        """Take ``sub`` off its route (releasing the route) and out of presence."""
        channel = sub.channel
        route = self.routes.get(channel)
        if route is not None:
            route.live.discard(session.conn)
            route.catching.pop(sub, None)
        try:
            await self.leave_presence(session, sub)
        finally:
            if route is not None:
                self.release_route(channel, route)

    async def leave_presence(self, session: Session, sub: Subscription) -> None:
        """Remove the subscription's presence member (if any) and tell the channel."""
        if sub.member is None:
            return
        channel = sub.channel
        sub.member = None
        removed = await self.broker.presence_remove(channel, session.client_id)
        # None: someone else already removed it (a Redis sweeper) and broadcast its leave.
        if removed is not None:
            leave = {"type": "presence_leave", "channel": channel, "member": removed}
            await self.broker.broadcast(channel, leave)
