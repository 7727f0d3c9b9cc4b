"""The WebSocket gateway: authentication, routing, catch-up, presence, limits, metrics.

Rules of this module:

* One asyncio task per connection reads frames and handles them **one at a time**, so
  a client's operations apply in the order it sent them (per-sender FIFO).
* Every write to a client is synchronous and never awaits (an already encoded frame,
  written to the transport): a slow client can never stall the fan-out loop or
  another client. Clients whose unsent bytes exceed ``outbound_limit_bytes`` after a
  fan-out are closed with 4008 and recover from history when they reconnect. Only
  connections whose transport passed its high-water mark (asyncio's ``pause_writing``)
  are checked, so the check costs nothing while every client keeps up.
* Every client frame gets exactly one answer when it carries ``_id``: ``ack`` after the
  operation was applied, or ``error`` with a code. Bad input never closes the socket.
* Tokens are secrets: they are read from the handshake and never logged (the
  websockets logger used here redacts them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from rtwidgets import protocol
from rtwidgets.auth import AuthError, install_redacting_filter, issue_token, verify_token
from rtwidgets.protocol import CloseCode, ErrorCode, ProtocolError
from rtwidgets.runtime import await_on_loop, get_runtime, stop_on_loop

from .brokers.base import Broker, BrokerUnavailable, SnapshotResult, StateFull
from .brokers.memory import MemoryBroker
from .config import GatewayConfig
from .metrics import CONTENT_TYPE, GatewayMetrics
from .ratelimit import TokenBucket
from .session import Session, Subscription

__all__ = ["Gateway", "GatewayConnection"]

log = logging.getLogger("rtwidgets.gateway")

# websockets logs request lines and headers at DEBUG; route them through a redacting logger.
_ws_log = install_redacting_filter("rtwidgets.gateway.websockets")


# Shared by every authenticated connection in place of its handshake headers (see
# _handle_connection). Never mutated: websockets does not touch them after the handshake.
_NO_HEADERS = Headers()


def _now_ms() -> int:
    return int(time.time() * 1000)


class GatewayConnection(ServerConnection):
    """A websockets server connection that remembers when it last received bytes and
    reports when its transport is backlogged.

    ``backlog`` (set by the gateway once the client is authenticated) is the gateway's
    set of connections whose transport is above its high-water mark: asyncio calls
    ``pause_writing`` / ``resume_writing`` (flow control) when the unsent bytes cross
    the marks, and websockets sets the marks from ``write_limit``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: Session | None = None
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


class _Route:
    """Local subscribers of one channel: live connections and ones still catching up."""

    __slots__ = ("attaching", "catching", "live")

    def __init__(self, attaching: asyncio.Future[None]) -> None:
        self.live: set[GatewayConnection] = set()
        self.catching: dict[Subscription, GatewayConnection] = {}
        self.attaching = attaching

    def empty(self) -> bool:
        return not self.live and not self.catching


class Gateway:
    """A WebSocket gateway serving the rtwidgets protocol (see ``docs/protocol.md``).

    ``secret`` signs and verifies tokens (a random one is generated if None);
    ``broker`` defaults to a :class:`MemoryBroker`, or a ``RedisBroker`` when ``redis``
    (a URL) is given. ``config`` and keyword overrides set the limits
    (:class:`GatewayConfig`). Start with ``await start_async()`` on a running loop, or
    ``start()`` from synchronous code (runs on the rtwidgets runtime thread).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        secret: str | None = None,
        broker: Broker | None = None,
        redis: str | None = None,
        config: GatewayConfig | None = None,
        **config_overrides: Any,
    ) -> None:
        if broker is not None and redis is not None:
            raise ValueError("pass either broker= or redis=, not both")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("secret must be a non-empty string")
        self.config = (config or GatewayConfig()).replace(**config_overrides)
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self.secret = secret if secret is not None else secrets.token_hex(32)
        self._redis_url = redis
        if self.config.channel_ttl is not None and redis is None:
            raise ValueError(
                "channel_ttl applies to the Redis broker made from redis=URL; "
                "the in-memory broker keeps channels for its lifetime, and a broker passed as "
                "broker= takes its own channel_ttl"
            )
        if broker is None and redis is None:
            broker = MemoryBroker(
                history_size=self.config.history_size,
                state_max_keys=self.config.state_max_keys,
                dedupe_window=self.config.effective_dedupe_window,
            )
        self._broker: Broker | None = broker
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._sessions: dict[str, Session] = {}
        self._routes: dict[str, _Route] = {}
        self._detaching: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # Connections whose transport is above its high-water mark (GatewayConnection).
        self._backlogged: set[GatewayConnection] = set()
        self._started_at = time.monotonic()
        self.metrics = GatewayMetrics(self._gauges)

    # ------------------------------------------------------------------ lifecycle

    @property
    def broker(self) -> Broker:
        """The broker in use (created lazily for ``redis=``)."""
        if self._broker is None:
            from rtwidgets.gateway.brokers.redis import RedisBroker  # optional, imported lazily

            # __init__ made a MemoryBroker unless broker= or redis= was given.
            assert self._redis_url is not None
            self._broker = RedisBroker(
                self._redis_url,
                history_size=self.config.history_size,
                state_max_keys=self.config.state_max_keys,
                channel_ttl=self.config.channel_ttl,
            )
        return self._broker

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """``ws://host:port`` of the running gateway."""
        if self.port is None:
            raise RuntimeError("the gateway is not started; call start() or await start_async()")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start_async(self) -> Gateway:
        """Start the broker and listen, on the running loop. Returns ``self``.

        Raises ``OSError`` if the address cannot be bound and ``BrokerUnavailable``
        if the broker cannot be reached; nothing is left running in either case.
        """
        if self._server is not None:
            return self
        loop = asyncio.get_running_loop()
        broker = self.broker
        broker.set_listener(self._deliver)
        cfg = self.config
        try:
            await broker.start()
            server = await serve(
                self._handle_connection,
                self.host,
                self._requested_port,
                process_request=self._process_request,
                compression=cfg.compression,
                ping_interval=cfg.ping_interval,
                ping_timeout=cfg.ping_timeout,
                close_timeout=cfg.close_timeout,
                max_size=cfg.hard_max_bytes,
                logger=_ws_log,
                create_connection=GatewayConnection,
                # pause_writing must fire no later than the outbound limit is passed, or
                # _deliver (which only checks backlogged connections) would miss a slow one.
                write_limit=min(_WRITE_LIMIT, cfg.outbound_limit_bytes),
            )
        except BaseException:
            # Nothing may stay half-started (also when start-up is cancelled by a timeout).
            with contextlib.suppress(Exception):
                await asyncio.shield(broker.close())
            raise
        self._server = server
        self._loop = loop
        self.port = server.sockets[0].getsockname()[1]
        self._started_at = time.monotonic()
        self._reaper = loop.create_task(self._reap(), name="rtwidgets-gateway-reaper")
        log.info("gateway listening on %s", self.url)
        return self

    async def stop_async(self, *, restart: bool = False) -> None:
        """Close every client, stop listening, close the broker. Idempotent.

        Clients are closed with 1001 (going away: they do not reconnect, as in the design:
        docs/design.md#connection-state-machine),
        or with ``restart=True`` with 1012 (service restart: they reconnect with backoff —
        behind a load balancer, to another gateway sharing the Redis broker).
        """
        loop = self._loop
        if self._server is None or loop is None:
            return
        # Started on another loop (e.g. the runtime thread)? Then it is stopped there.
        await await_on_loop(loop, lambda: self._stop_here(restart))

    async def _stop_here(self, restart: bool = False) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if restart:
            server.close(close_connections=True, code=CloseCode.SERVICE_RESTART, reason="Gateway restarting")
        else:
            server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason="Gateway shutting down")
        await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._detaching:
            await asyncio.gather(*self._detaching.values(), return_exceptions=True)
        await self.broker.close()
        log.info("gateway on port %s stopped", self.port)
        self._loop = None

    def start(self, timeout: float = 30.0) -> Gateway:
        """Start on the rtwidgets runtime thread (for synchronous code). Returns ``self``."""
        if self._server is not None:
            return self
        return get_runtime().run(self.start_async(), timeout=timeout)

    def stop(self, timeout: float = 30.0, *, restart: bool = False) -> None:
        """Synchronous :meth:`stop_async` (must not be called on the gateway's own loop)."""
        loop = self._loop
        if self._server is None or loop is None:
            return
        if not stop_on_loop(loop, lambda: self._stop_here(restart), timeout, owner="Gateway"):
            # Its loop no longer runs (e.g. asyncio.run() returned): nothing can be awaited there.
            self._server = self._loop = None

    async def __aenter__(self) -> Gateway:
        return await self.start_async()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    def __repr__(self) -> str:
        return f"<Gateway {self.url} running>" if self._server is not None else "<Gateway stopped>"

    def token(
        self,
        user: str,
        channels: Sequence[str] = ("*",),
        *,
        publish: Sequence[str] | None = None,
        presence: Sequence[str] | None = None,
        ttl: float | None = 3600,
    ) -> str:
        """Issue a token for ``user`` signed with this gateway's secret."""
        return issue_token(self.secret, user, channels, publish=publish, presence=presence, ttl=ttl)

    # ------------------------------------------------------------------ stats

    def _gauges(self) -> dict[str, float]:
        sessions = list(self._sessions.values())
        outbound = 0
        for s in sessions:
            transport = s.conn.transport
            if transport is not None:
                outbound = max(outbound, transport.get_write_buffer_size())
        return {
            "connections": len(sessions),
            "channels": len(self._routes),
            "subscriptions": sum(len(s.subscriptions) for s in sessions),
            "outbound_buffer_max_bytes": outbound,
        }

    def stats(self) -> dict[str, Any]:
        """Counters and gauges: connections, channels, subscriptions, messages_published,
        deliveries, errors (total), errors_by_code, slow_consumer_closes, idle_closes,
        auth_failures, outbound_buffer_max_bytes, publish_rate, uptime, running."""
        out: dict[str, Any] = dict(self._gauges())
        out.update(self.metrics.snapshot())
        out["uptime"] = time.monotonic() - self._started_at if self._server is not None else 0.0
        out["running"] = self._server is not None
        return out

    def sessions(self) -> list[dict[str, Any]]:
        """One dict per open connection: ``clientId``, ``userId``, ``channels`` (subscribed, sorted)
        and ``presence`` (the channels where it is a presence member). Call on the gateway's loop."""
        return [
            {
                "clientId": s.client_id,
                "userId": s.user_id,
                "channels": sorted(s.subscriptions),
                "presence": sorted(name for name, sub in s.subscriptions.items() if sub.member is not None),
            }
            for s in self._sessions.values()
        ]

    # ------------------------------------------------------------------ HTTP

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if path == "/healthz":
            gauges = self._gauges()
            body = protocol.encode(
                {"status": "ok", "connections": gauges["connections"], "channels": gauges["channels"]}
            )
            return _response(conn, http.HTTPStatus.OK, body, "application/json")
        if path == "/metrics":
            return _response(conn, http.HTTPStatus.OK, self.metrics.render().decode(), CONTENT_TYPE)
        if not upgrade:
            if path == "/":
                return None  # websockets answers 426 Upgrade Required
            return _response(conn, http.HTTPStatus.NOT_FOUND, "Not found. Try /, /healthz or /metrics.\n")
        allowed = self.config.allowed_origins
        if allowed is not None:
            origin = request.headers.get("Origin")
            if origin not in allowed:
                log.info("refused WebSocket handshake from origin %r", origin)
                return _response(conn, http.HTTPStatus.FORBIDDEN, "Origin not allowed.\n")
        return None

    # ------------------------------------------------------------------ connections

    @staticmethod
    def _token_from(request: Request | None) -> str | None:
        if request is None:
            return None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        query = urllib.parse.urlsplit(request.path).query
        values = urllib.parse.parse_qs(query).get("token")
        return values[0] if values else None

    async def _handle_connection(self, conn: ServerConnection) -> None:
        assert isinstance(conn, GatewayConnection)
        peer = _peer(conn)
        try:
            claims = verify_token(self.secret, self._token_from(conn.request))
        except AuthError as exc:
            self.metrics.auth_failures += 1
            log.info("authentication failed for %s: %s", peer, exc)
            await conn.close(CloseCode.AUTH_FAILED, "Authentication failed")
            return
        # websockets keeps the handshake headers for the connection's lifetime (~3.5 KiB);
        # the token was their only use. The request itself stays (websockets reads it).
        if conn.request is not None:
            conn.request.headers = _NO_HEADERS
        if conn.response is not None:
            conn.response.headers = _NO_HEADERS
        conn.track_backlog(self._backlogged)
        cfg = self.config
        session = Session(
            client_id=uuid.uuid4().hex,
            claims=claims,
            conn=conn,
            bucket=TokenBucket(cfg.publish_rate, cfg.publish_burst, conn.loop.time()),
        )
        conn.session = session
        self._sessions[session.client_id] = session
        self.metrics.connections_total += 1
        log.debug("client %s (user %s) connected from %s", session.client_id, session.user_id, peer)
        self._send(
            conn,
            {
                "type": "connected",
                "clientId": session.client_id,
                "userId": session.user_id,
                "serverTime": _now_ms(),
                "heartbeat": {"timeout": int(cfg.heartbeat_timeout * 1000)},
                "limits": {
                    "maxMessageBytes": cfg.max_message_bytes,
                    "maxPresenceBytes": cfg.max_presence_bytes,
                    "maxChannels": cfg.max_channels_per_connection,
                    "publishRate": cfg.publish_rate,
                    "publishBurst": cfg.publish_burst,
                    "historySize": cfg.history_size,
                },
            },
        )
        try:
            while True:
                try:
                    raw = await conn.recv()
                except ConnectionClosed:
                    break
                if claims.expired():
                    await self._close(session, CloseCode.TOKEN_EXPIRED, "Token expired")
                    break
                await self._on_frame(session, raw)
        finally:
            self._sessions.pop(session.client_id, None)
            await self._cleanup(session)
            log.debug("client %s disconnected (code %s)", session.client_id, conn.close_code)

    async def _cleanup(self, session: Session) -> None:
        subs = list(session.subscriptions.values())
        session.subscriptions.clear()
        for sub in subs:
            try:
                await self._leave(session, sub)
            except Exception:
                log.exception("cleanup of channel %r for client %s failed", sub.channel, session.client_id)

    async def _close(self, session: Session, code: int, reason: str) -> None:
        if session.closing:
            return
        session.closing = True
        self._stop_feeding(session)
        await session.conn.close(code, reason)

    def _stop_feeding(self, session: Session) -> None:
        # Take the connection off every fan-out path at once; full cleanup follows
        # when its handler notices the close.
        conn = session.conn
        for name, sub in session.subscriptions.items():
            route = self._routes.get(name)
            if route is not None:
                route.live.discard(conn)
                route.catching.pop(sub, None)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reap(self) -> None:
        """Close idle connections (4009) and ones whose token expired (4002)."""
        interval = max(0.05, min(1.0, self.config.heartbeat_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                self._reap_once(loop.time(), time.time())
            except Exception:  # the reaper must outlive any single bad session
                log.exception("gateway reaper pass failed")

    def _reap_once(self, now: float, wall: float) -> None:
        timeout = self.config.heartbeat_timeout
        self.metrics.publish_rate()  # records a sample, so the rate has history to average
        for session in list(self._sessions.values()):
            if session.closing:
                continue
            if now - session.conn.last_seen > timeout:
                self.metrics.idle_closes += 1
                log.info("closing idle client %s", session.client_id)
                self._spawn(self._close(session, CloseCode.IDLE_TIMEOUT, "Idle timeout"))
            elif session.claims.expired(wall):
                log.info("closing client %s: token expired", session.client_id)
                self._spawn(self._close(session, CloseCode.TOKEN_EXPIRED, "Token expired"))

    # ------------------------------------------------------------------ writing

    def _send(self, conn: ServerConnection, frame: dict[str, Any]) -> None:
        # Same non-blocking path as fan-out, so per-connection order is the call order.
        if conn.protocol.state is State.OPEN:
            broadcast((conn,), protocol.encode_bytes(frame), text=True)
        else:
            # The connection is closing or closed (e.g. an ack whose broker call outlived the
            # socket). Nothing stored is lost: the client learns of the loss through the close
            # code, fails or retries its pending ops, and resubscribes with its lastEventId, so
            # stored messages are replayed. Count it so operators can see it happening.
            self.metrics.frames_dropped_closed += 1

    def _send_error(
        self, conn: ServerConnection, code: ErrorCode, reason: str, msg_id: Any, channel: str | None
    ) -> None:
        self.metrics.error(code.value)
        self._send(conn, protocol.error_frame(code, reason, msg_id, channel))

    def _deliver(self, channel: str, frame: dict[str, Any], data: bytes) -> None:
        """Broker listener: write one encoded frame (UTF-8 JSON bytes) to every local subscriber."""
        route = self._routes.get(channel)
        if route is None:
            return
        live = route.live
        if live:
            if self.config.compression is None and not _ws_log.isEnabledFor(logging.DEBUG):
                _write_frame(live, data)
            else:
                broadcast(live, data, text=True)
            self.metrics.deliveries += len(live)
            backlogged = self._backlogged
            if backlogged:
                limit = self.config.outbound_limit_bytes
                slow = [c for c in backlogged if c.transport.get_write_buffer_size() > limit]
                for conn in slow:
                    self._slow_consumer(conn)
        if route.catching:
            held_limit = self.config.outbound_limit_bytes
            for sub, conn in list(route.catching.items()):
                if sub.held is not None:
                    sub.held.append((frame, data))
                    sub.held_bytes += len(data)
                    # A catch-up that never ends (a stuck broker) must not grow without bound.
                    if sub.held_bytes > held_limit:
                        route.catching.pop(sub, None)
                        self._slow_consumer(conn)

    def _slow_consumer(self, conn: GatewayConnection) -> None:
        session = conn.session
        if session is None or session.closing:
            return
        self.metrics.slow_consumer_closes += 1
        # Closing: no need to look at its buffer again after every message.
        self._backlogged.discard(conn)
        log.warning(
            "closing slow consumer %s: %d bytes unsent (limit %d)",
            session.client_id,
            conn.transport.get_write_buffer_size(),
            self.config.outbound_limit_bytes,
        )
        self._spawn(self._close(session, CloseCode.SLOW_CONSUMER, "Slow consumer"))

    # ------------------------------------------------------------------ reading

    async def _on_frame(self, session: Session, raw: str | bytes) -> None:
        conn = session.conn
        msg: dict[str, Any] | None = None
        try:
            if isinstance(raw, bytes):
                raise ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not supported; send JSON text")
            msg = protocol.parse_client_frame(raw.encode(), max_bytes=self.config.max_message_bytes)
            handler = self._handlers[msg["type"]]
            extra = await handler(self, session, msg)
        except ProtocolError as exc:
            msg_id = exc.msg_id if exc.msg_id is not None else _id_of(msg)
            if msg_id is None and exc.code in _SALVAGE_ID_CODES and isinstance(raw, str):
                # protocol.parse_client_frame refuses too-deep and oversize frames before it
                # reads their _id; recover it so the sender's pending request is answered
                # (error path only; the frame is below hard_max_bytes, so decoding is bounded).
                msg_id = _salvage_id(raw)
            self._send_error(conn, exc.code, exc.reason, msg_id, _channel_of(msg))
        except BrokerUnavailable as exc:
            log.warning("broker unavailable while handling %s: %s", _type_of(msg), exc)
            self._send_error(
                conn, ErrorCode.UNAVAILABLE, "broker unavailable, retry later", _id_of(msg), _channel_of(msg)
            )
        except Exception:
            log.exception(
                "internal error handling a %s frame from client %s", _type_of(msg), session.client_id
            )
            self._send_error(conn, ErrorCode.INTERNAL, "internal server error", _id_of(msg), _channel_of(msg))
        else:
            msg_id = msg.get("_id")
            if msg_id is not None:
                ack: dict[str, Any] = {"type": "ack", "id": msg_id}
                if extra:
                    ack.update(extra)
                self._send(conn, ack)

    async def _on_ping(self, session: Session, msg: dict[str, Any]) -> dict[str, Any] | None:
        pong: dict[str, Any] = {"type": "pong", "serverTime": _now_ms()}
        if msg.get("t") is not None:
            pong["t"] = msg["t"]
        self._send(session.conn, pong)
        return None

    async def _on_subscribe(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        channel: str = msg["channel"]
        options: dict[str, Any] = msg["options"]
        msg_id = msg.get("_id")
        if not session.can("subscribe", channel):
            raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed to subscribe to {channel!r}", msg_id)
        want_presence = bool(options.get("presence"))
        if want_presence and not session.can("presence", channel):
            raise ProtocolError(ErrorCode.FORBIDDEN, f"presence not allowed on {channel!r}", msg_id)
        presence_data = options.get("presenceData") or {}
        if want_presence:
            self._check_presence_size(presence_data, msg_id)
        sub = session.subscriptions.get(channel)
        is_new = sub is None
        if sub is None:
            if len(session.subscriptions) >= self.config.max_channels_per_connection:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_CHANNELS,
                    f"at most {self.config.max_channels_per_connection} subscriptions per connection",
                    msg_id,
                )
            sub = Subscription(channel)
            session.subscriptions[channel] = sub
        route = self._route_for(channel)
        conn = session.conn
        # Park live frames until the snapshot is out: no gap, no duplicate.
        route.live.discard(conn)
        sub.held = []
        sub.held_bytes = 0
        route.catching[sub] = conn
        # All-or-nothing: every broker call happens before anything is sent to the client, and
        # a failure undoes what this call did (see _abort_subscribe). These record what to undo.
        stored: dict[str, Any] | None = None  # presence member this call added (maybe stored)
        join_sent = False  # its presence_join was (maybe) broadcast
        members: list[dict[str, Any]] | None = None
        # Held frames received before the member list was read are older than it; the ones
        # after may be newer (a Redis reply and a pub/sub message race), so the list goes
        # between the two parts: a newer update is never overwritten by the older list.
        held_before_members = 0
        try:
            await asyncio.shield(route.attaching)
            snap = await self.broker.snapshot(
                channel,
                last_event_id=options.get("lastEventId"),
                epoch=options.get("epoch"),
                history=options.get("history") or 0,
                want_state=bool(options.get("state")),
            )
            if want_presence:
                if sub.member is None:
                    member = {
                        "userId": session.user_id,
                        "clientId": session.client_id,
                        "data": presence_data,
                        "joinedAt": _now_ms(),
                    }
                    stored = member  # before the await: a failed call may still have stored it
                    await self.broker.presence_set(channel, member)
                    sub.member = member
                    join_sent = True
                    await self.broker.broadcast(
                        channel, {"type": "presence_join", "channel": channel, "member": member}
                    )
                elif options.get("presenceData") is not None and sub.member["data"] != presence_data:
                    # Re-subscribing with new presenceData is a presence update.
                    member = {**sub.member, "data": presence_data}
                    await self.broker.presence_set(channel, member)
                    sub.member = member
                    await self.broker.broadcast(
                        channel, {"type": "presence_update", "channel": channel, "member": member}
                    )
                held_before_members = len(sub.held)
                members = await self.broker.presence_members(channel)
            elif sub.member is not None:
                # Re-subscribing without presence leaves presence (the client's last model that
                # wanted it is gone; the subscription stays).
                await self._leave_presence(session, sub)
        except BaseException as exc:
            self._abort_subscribe(session, sub, route, is_new=is_new, joined=stored is not None)
            if stored is not None:
                undo = self._undo_join(channel, session.client_id, join_sent)
                if isinstance(exc, Exception):
                    await undo
                else:
                    # Cancelled (the gateway is stopping): do not await here; undo in the background.
                    self._spawn(undo)
            raise
        # Every broker call succeeded: from here on only synchronous writes, in order.
        if options.get("history") or options.get("lastEventId") is not None or options.get("state"):
            self._send(conn, _history_frame(snap, msg_id))
        held, sub.held = sub.held, None
        route.catching.pop(sub, None)
        for i, (frame, data) in enumerate(held):
            if i == held_before_members and members is not None:
                self._send(conn, {"type": "presence_sync", "channel": channel, "members": members})
                members = None
            # A new subscription skips what its snapshot covers. A live one re-subscribing (another
            # model of the client catching up) gets every frame: it has not seen the snapshot's
            # events, only its own stream, and drops repeats by offset.
            if is_new and _covered(frame, snap):
                continue
            if conn.protocol.state is State.OPEN:
                broadcast((conn,), data, text=True)
        if not session.closing:
            route.live.add(conn)
        if members is not None:
            self._send(conn, {"type": "presence_sync", "channel": channel, "members": members})
        extra: dict[str, Any] = {
            "channel": channel,
            "epoch": snap.epoch,
            "offset": snap.offset,
            "latestEventId": snap.latest_event_id,
        }
        if snap.recovered is not None:
            extra["recovered"] = snap.recovered
        return extra

    def _abort_subscribe(
        self, session: Session, sub: Subscription, route: _Route, *, is_new: bool, joined: bool
    ) -> None:
        """Undo the local side of a failed subscribe, leaving the connection as it was before.

        A new subscription is forgotten (and the channel detached if nobody else here uses
        it); an existing one gets the live frames parked meanwhile and goes live again.
        ``joined``: the failed call added a presence member, which the caller removes with
        :meth:`_undo_join`. Synchronous, so it completes for a cancelled subscribe too.
        """
        channel = sub.channel
        conn = session.conn
        route.catching.pop(sub, None)
        held, sub.held = sub.held, None
        sub.held_bytes = 0
        if joined:
            sub.member = None
        attaching = route.attaching
        attach_failed = attaching.done() and not attaching.cancelled() and attaching.exception() is not None
        if attach_failed and self._routes.get(channel) is route:
            # The broker refused the channel: forget the route so the next subscribe retries.
            del self._routes[channel]
        if is_new:
            if session.subscriptions.get(channel) is sub:
                del session.subscriptions[channel]
            route.live.discard(conn)
            self._release_route(channel, route)
        elif not session.closing:
            # The earlier subscription stays: it must not miss what was parked for it.
            for _frame, data in held or ():
                if conn.protocol.state is State.OPEN:
                    broadcast((conn,), data, text=True)
            route.live.add(conn)

    async def _undo_join(self, channel: str, client_id: str, join_sent: bool) -> None:
        """Remove the presence member a failed subscribe added; ``presence_leave`` if its join
        went out (and it was still there). Broker errors are logged, not raised: the caller
        answers the original error."""
        try:
            removed = await self.broker.presence_remove(channel, client_id)
            if removed is not None and join_sent:
                await self.broker.broadcast(
                    channel, {"type": "presence_leave", "channel": channel, "member": removed}
                )
        except Exception:
            # RedisBroker retries a failed removal itself (and then broadcasts the leave).
            log.warning(
                "undoing the presence join of client %s on %r failed", client_id, channel, exc_info=True
            )

    def _route_for(self, channel: str) -> _Route:
        route = self._routes.get(channel)
        if route is None:
            loop = asyncio.get_running_loop()
            attaching = loop.create_task(self._attach(channel, self._detaching.get(channel)))
            route = self._routes[channel] = _Route(attaching)
        return route

    async def _attach(self, channel: str, pending_detach: asyncio.Task[None] | None) -> None:
        # A detach of the previous route may still be in flight: let it land first,
        # otherwise it could undo this attach.
        if pending_detach is not None:
            with contextlib.suppress(Exception):
                await pending_detach
        await self.broker.attach(channel)

    def _release_route(self, channel: str, route: _Route) -> None:
        """Drop ``route`` if nobody uses it any more, detaching the channel."""
        if not route.empty() or self._routes.get(channel) is not route:
            return
        del self._routes[channel]
        attaching = route.attaching

        async def detach() -> None:
            try:
                with contextlib.suppress(Exception):
                    await attaching
                if channel not in self._routes or self._routes[channel].attaching is not attaching:
                    await self.broker.detach(channel)
            except Exception:
                log.warning("detaching channel %r failed", channel, exc_info=True)
            finally:
                if self._detaching.get(channel) is task:
                    del self._detaching[channel]

        task = asyncio.get_running_loop().create_task(detach())
        self._detaching[channel] = task

    async def _leave(self, session: Session, sub: Subscription) -> None:
        channel = sub.channel
        route = self._routes.get(channel)
        if route is not None:
            route.live.discard(session.conn)
            route.catching.pop(sub, None)
        try:
            await self._leave_presence(session, sub)
        finally:
            if route is not None:
                self._release_route(channel, route)

    async def _leave_presence(self, session: Session, sub: Subscription) -> None:
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

    async def _on_unsubscribe(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        channel: str = msg["channel"]
        sub = session.subscriptions.pop(channel, None)
        if sub is None:
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel!r}", msg.get("_id"))
        await self._leave(session, sub)
        return {"channel": channel}

    async def _on_publish(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        channel: str = msg["channel"]
        msg_id = msg.get("_id")
        if not session.can("publish", channel):
            raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed to publish to {channel!r}", msg_id)
        key = msg.get("key")
        ephemeral = bool(msg.get("ephemeral"))
        if ephemeral and key is not None:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "an ephemeral message cannot carry 'key' (it is not stored)", msg_id
            )
        bucket = session.bucket
        now = session.conn.loop.time()
        if not bucket.try_acquire(now):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"over {self.config.publish_rate:g} publishes/s; retry in {bucket.retry_after(now):.3f} s",
                msg_id,
            )
        frame: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "data": msg["data"],
            "senderId": session.user_id,
            "clientId": session.client_id,
        }
        for field in ("seq", "key", "msgId"):
            value = msg.get(field)
            if value is not None:
                frame[field] = value
        if ephemeral:
            frame["timestamp"] = _now_ms()
            frame["ephemeral"] = True
            await self.broker.broadcast(channel, frame)
            self.metrics.messages_published += 1
            return {"channel": channel, "ephemeral": True}
        try:
            out = await self.broker.publish(channel, frame, key=key, msg_id=msg.get("msgId"))
        except StateFull as exc:  # any other error is a bug: answered ``internal`` by _on_frame
            raise ProtocolError(ErrorCode.STATE_FULL, str(exc), msg_id) from None
        extra: dict[str, Any] = {
            "channel": channel,
            "eventId": out.get("eventId"),
            "offset": out.get("offset"),
        }
        if out.get("duplicate"):
            extra["duplicate"] = True
        else:
            self.metrics.messages_published += 1
        return extra

    def _check_presence_size(self, data: dict[str, Any], msg_id: Any) -> None:
        size = len(protocol.encode_bytes(data))
        if size > self.config.max_presence_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"presence data of {size} bytes exceeds {self.config.max_presence_bytes}",
                msg_id,
            )

    async def _on_presence_update(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        channel: str = msg["channel"]
        msg_id = msg.get("_id")
        sub = session.subscriptions.get(channel)
        if sub is None:
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {channel!r}", msg_id)
        if sub.member is None:
            raise ProtocolError(
                ErrorCode.PRESENCE_DISABLED, f"subscribed to {channel!r} without presence", msg_id
            )
        data = msg["data"]
        self._check_presence_size(data, msg_id)
        member = {**sub.member, "data": data}
        await self.broker.presence_set(channel, member)
        sub.member = member
        await self.broker.broadcast(
            channel, {"type": "presence_update", "channel": channel, "member": member}
        )
        return {"channel": channel}

    async def _on_sync(self, session: Session, msg: dict[str, Any]) -> dict[str, Any]:
        msg_id = msg.get("_id")
        explicit = msg.get("channel")
        if explicit is not None:
            if not session.can("subscribe", explicit):
                raise ProtocolError(ErrorCode.FORBIDDEN, f"not allowed to read {explicit!r}", msg_id)
            channels = [explicit]
        else:
            channels = list(session.subscriptions)
        last_event_id = msg.get("lastEventId")
        epoch = msg.get("epoch")
        pending = msg.get("pendingOps")
        for channel in channels:
            response = await self._sync_response(channel, last_event_id, epoch)
            if pending:
                response["confirmedOps"] = await self._confirmed_ops(channel, pending, response)
            self._send(session.conn, response)
        return {"channels": channels}

    async def _sync_response(
        self, channel: str, last_event_id: str | None, epoch: str | None
    ) -> dict[str, Any]:
        if last_event_id is not None:
            snap = await self.broker.snapshot(
                channel, last_event_id=last_event_id, epoch=epoch, history=0, want_state=False
            )
            if snap.recovered:
                return {
                    "type": "sync_response",
                    "channel": channel,
                    "syncType": "delta",
                    "events": snap.events,
                    "latestEventId": snap.latest_event_id,
                    "version": snap.offset,
                    "epoch": snap.epoch,
                }
        # Not resumable (or no position given): a snapshot, which must carry the keyed state, so
        # it is read with want_state (the resume attempt above did not ask for it).
        snap = await self.broker.snapshot(
            channel, last_event_id=None, epoch=None, history=self.config.history_size, want_state=True
        )
        return {
            "type": "sync_response",
            "channel": channel,
            "syncType": "snapshot",
            "state": snap.state or {},
            "events": snap.events,
            "latestEventId": snap.latest_event_id,
            "version": snap.offset,
            "epoch": snap.epoch,
        }

    async def _confirmed_ops(self, channel: str, pending: list[str], response: dict[str, Any]) -> list[str]:
        """The msgIds among ``pending`` that are stored on ``channel`` (retained history or state)."""
        wanted = set(pending)
        if response["syncType"] == "snapshot":
            events, state = response["events"], response["state"]
        else:
            snap = await self.broker.snapshot(
                channel, last_event_id=None, epoch=None, history=self.config.history_size, want_state=True
            )
            events, state = snap.events, snap.state or {}
        found = {f.get("msgId") for f in events} | {f.get("msgId") for f in state.values()}
        return [op for op in pending if op in wanted and op in found]

    _handlers: dict[str, Any] = {
        "ping": _on_ping,
        "subscribe": _on_subscribe,
        "unsubscribe": _on_unsubscribe,
        "publish": _on_publish,
        "presence_update": _on_presence_update,
        "sync": _on_sync,
    }


# ---------------------------------------------------------------------- helpers

# websockets' default write_limit (high-water mark of each transport's buffer).
_WRITE_LIMIT = 2**15


def _write_frame(connections: set[GatewayConnection], data: bytes) -> None:
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


def _response(
    conn: ServerConnection, status: http.HTTPStatus, body: str, content_type: str | None = None
) -> Response:
    response = conn.respond(status, body)
    if content_type is not None:
        headers = Headers(response.headers)
        del headers["Content-Type"]
        headers["Content-Type"] = content_type
        response.headers = headers
    return response


def _history_frame(snap: SnapshotResult, request_id: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "history",
        "channel": snap.channel,
        "data": snap.events,
        "epoch": snap.epoch,
        "latestEventId": snap.latest_event_id,
        "offset": snap.offset,
    }
    if request_id is not None:
        # [ext] which subscribe this answers: a client with several models on the channel routes
        # the catch-up to the one that asked.
        frame["requestId"] = request_id
    if snap.recovered is not None:
        frame["recovered"] = snap.recovered
    if snap.state is not None:
        frame["state"] = snap.state
    return frame


def _covered(frame: dict[str, Any], snap: SnapshotResult) -> bool:
    """True if a held frame is already accounted for by the snapshot."""
    if frame.get("type") != "message":
        return False
    offset = frame.get("offset")
    return isinstance(offset, int) and frame.get("epoch") == snap.epoch and offset <= snap.offset


def _peer(conn: ServerConnection) -> str:
    try:
        addr = conn.remote_address
    except Exception:
        return "?"
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)


def _type_of(msg: dict[str, Any] | None) -> str:
    return str(msg.get("type"))[:40] if msg else "unparsed"


def _id_of(msg: dict[str, Any] | None) -> Any:
    return msg.get("_id") if msg else None


# Refusals raised before the frame's _id was read (see _on_frame).
_SALVAGE_ID_CODES = frozenset({ErrorCode.TOO_DEEP, ErrorCode.TOO_LARGE})


def _salvage_id(raw: str) -> Any:
    try:
        value = protocol.decode(raw)
    except ProtocolError:
        return None
    msg_id = value.get("_id") if isinstance(value, dict) else None
    if isinstance(msg_id, bool):
        return None
    if isinstance(msg_id, int) and abs(msg_id) <= 2**53:
        return msg_id
    if isinstance(msg_id, str) and 0 < len(msg_id) <= protocol.MAX_ID_LENGTH:
        return msg_id
    return None


def _channel_of(msg: dict[str, Any] | None) -> str | None:
    if not msg:
        return None
    channel = msg.get("channel")
    try:
        return protocol.validate_channel(channel) if channel is not None else None
    except ProtocolError:
        return None
