"""The WebSocket gateway: :class:`Gateway` — lifecycle, the public API, and each connection's loop.

The gateway is split by concern; this module wires the parts together and owns none of
their rules:

* :mod:`.hub` — sessions, channel routes, fan-out and every write to a client;
* :mod:`.handlers` — the client-frame dispatch and the message handlers, with
  :mod:`.subscribe` for ``subscribe`` and its catch-up (:mod:`rtwidgets.core.catchup`);
* :mod:`.http` — ``/healthz``, ``/metrics``, 404/426, the Origin check, the token's place;
* :mod:`.reaper` — idle and expired connections;
* :mod:`.fastpath` — the connection class and the fan-out write into websockets' internals;
* :mod:`.session` — per-connection data.

Rules of this module:

* One asyncio task per connection (:meth:`Gateway._handle_connection`) authenticates the
  handshake, then reads frames and hands them to the handlers **one at a time**, so a client's
  operations apply in the order it sent them (per-sender FIFO). When the socket closes, the
  connection leaves every channel (:meth:`Hub.cleanup <rtwidgets.gateway.hub.Hub.cleanup>`).
* Tokens are secrets: they are read from the handshake and never logged (the websockets logger
  used here redacts them too); the handshake headers are dropped once the token was read.
* Nothing is left half-started: a failed or cancelled :meth:`Gateway.start_async` closes the
  broker again; :meth:`Gateway.stop_async` closes every client, then background tasks, then the
  broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from rtwidgets.auth import AuthError, issue_token, verify_token
from rtwidgets.protocol import CloseCode
from rtwidgets.runtime import await_on_loop, get_runtime, stop_on_loop

from .brokers.base import Broker
from .brokers.memory import MemoryBroker
from .config import GatewayConfig
from .discovery import DEFAULT_IDLE_TIMEOUT, SharedGateway, shared_gateway
from .fastpath import WRITE_LIMIT, GatewayConnection
from .handlers import Handlers
from .http import HttpEndpoints, token_from
from .hub import Hub, now_ms, ws_log
from .ratelimit import TokenBucket
from .reaper import reap
from .session import Session

__all__ = ["Gateway", "GatewayConnection"]

log = logging.getLogger("rtwidgets.gateway")


# Shared by every authenticated connection in place of its handshake headers (see
# _handle_connection). Never mutated: websockets does not touch them after the handshake.
_NO_HEADERS = Headers()


class Gateway:
    """A WebSocket gateway serving the rtwidgets protocol (see ``docs/protocol.md``).

    ``secret`` signs and verifies tokens (a random one is generated if None);
    ``broker`` defaults to a :class:`MemoryBroker`, or a ``RedisBroker`` when ``redis``
    (a URL) is given. ``config`` and keyword overrides set the limits
    (:class:`GatewayConfig`). Start with ``await start_async()`` on a running loop, or
    ``start()`` from synchronous code (runs on the rtwidgets runtime thread).

    Args:
        host: the interface to listen on.
        port: the port to listen on (``0``: a free one, see :attr:`port` once started).
        secret: the token signing secret, a non-empty str (``None``: a random one).
        broker: the broker to use; not together with ``redis``.
        redis: a Redis URL: the gateway makes a ``RedisBroker`` for it when started.
        config: the limits (``None``: :class:`GatewayConfig`'s defaults).
        reuse_port: listen with ``SO_REUSEPORT``, so several processes share ``port`` (the
            kernel spreads connections over them; ``rtwidgets gateway --workers``).
        **config_overrides: :class:`GatewayConfig` fields to change in ``config``.

    Raises:
        ValueError: both ``broker`` and ``redis``, an empty or non-str ``secret``, a limit out
            of range, or ``channel_ttl`` without ``redis``.
        TypeError: an override that is not a :class:`GatewayConfig` field.
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
        reuse_port: bool = False,
        **config_overrides: Any,
    ) -> None:
        if broker is not None and redis is not None:
            raise ValueError("pass either broker= or redis=, not both")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("secret must be a non-empty string")
        config = (config or GatewayConfig()).replace(**config_overrides)
        self._hub = hub = Hub(config, lambda: self.broker)
        self._handlers = Handlers(hub)
        self._http = HttpEndpoints(hub)
        self.host = host
        self._requested_port = port
        self._reuse_port = reuse_port
        self.port: int | None = None
        self.secret = secret if secret is not None else secrets.token_hex(32)
        self._redis_url = redis
        if config.channel_ttl is not None and redis is None:
            raise ValueError(
                "channel_ttl applies to the Redis broker made from redis=URL; "
                "the in-memory broker keeps channels for its lifetime, and a broker passed as "
                "broker= takes its own channel_ttl"
            )
        if broker is None and redis is None:
            broker = MemoryBroker(
                history_size=config.history_size,
                state_max_keys=config.state_max_keys,
                dedupe_window=config.effective_dedupe_window,
            )
        self._broker: Broker | None = broker
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reaper: asyncio.Task[None] | None = None
        # The hub's containers under the names the gateway always had (tests read them).
        self._sessions = hub.sessions
        self._routes = hub.routes
        self._backlogged = hub.backlogged
        self._started_at = time.monotonic()
        self.metrics = hub.metrics

    # ------------------------------------------------------------------ lifecycle

    @property
    def config(self) -> GatewayConfig:
        """The limits in use (:class:`GatewayConfig`)."""
        return self._hub.config

    @config.setter
    def config(self, config: GatewayConfig) -> None:
        if not isinstance(config, GatewayConfig):
            raise TypeError(f"config must be a GatewayConfig, got {type(config).__name__}")
        self._hub.config = config

    @property
    def broker(self) -> Broker:
        """The broker in use (created lazily for ``redis=``)."""
        if self._broker is None:
            # Optional, imported lazily; a redis+cluster:// URL gets the Redis Cluster broker.
            from rtwidgets.gateway.brokers.redis_cluster import redis_broker_for

            # __init__ made a MemoryBroker unless broker= or redis= was given.
            assert self._redis_url is not None
            self._broker = redis_broker_for(
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
        broker.set_listener(self._hub.deliver)
        cfg = self.config
        try:
            await broker.start()
            server = await serve(
                self._handle_connection,
                self.host,
                self._requested_port,
                process_request=self._http.process_request,
                compression=cfg.compression,
                ping_interval=cfg.ping_interval,
                ping_timeout=cfg.ping_timeout,
                close_timeout=cfg.close_timeout,
                max_size=cfg.hard_max_bytes,
                logger=ws_log,
                create_connection=GatewayConnection,
                # pause_writing must fire no later than the outbound limit is passed, or
                # Hub.deliver (which only checks backlogged connections) would miss a slow one.
                write_limit=min(WRITE_LIMIT, cfg.outbound_limit_bytes),
                reuse_port=self._reuse_port or None,  # None: asyncio's default (off)
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
        self.metrics.started()  # /metrics: rtwidgets_gateway_start_time_seconds
        self._reaper = loop.create_task(reap(self._hub), name="rtwidgets-gateway-reaper")
        log.info("gateway listening on %s", self.url)
        return self

    async def stop_async(self, *, restart: bool = False) -> None:
        """Close every client, stop listening, close the broker. Idempotent.

        Clients are closed with 1001 (going away: they do not reconnect, as in the design:
        docs/design.md#connection-state-machine),
        or with ``restart=True`` with 1012 (service restart: they reconnect with backoff —
        behind a load balancer, to another gateway sharing the Redis broker).

        Args:
            restart: close clients with 1012 (they reconnect) instead of 1001.
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
        hub = self._hub
        for task in list(hub.tasks):
            task.cancel()
        if hub.tasks:
            await asyncio.gather(*hub.tasks, return_exceptions=True)
        if hub.detaching:
            await asyncio.gather(*hub.detaching.values(), return_exceptions=True)
        await self.broker.close()
        log.info("gateway on port %s stopped", self.port)
        self._loop = None

    def start(self, timeout: float = 30.0) -> Gateway:
        """Start on the rtwidgets runtime thread (for synchronous code). Returns ``self``.

        Args:
            timeout: seconds to wait for the broker and the listening socket.

        Raises:
            OSError: the address cannot be bound.
            BrokerUnavailable: the broker cannot be reached.
            RuntimeError: called on the runtime thread.
            TimeoutError: not started within ``timeout`` seconds (nothing is left running).
        """
        if self._server is not None:
            return self
        return get_runtime().run(self.start_async(), timeout=timeout)

    def stop(self, timeout: float = 30.0, *, restart: bool = False) -> None:
        """Synchronous :meth:`stop_async` (must not be called on the gateway's own loop).

        Args:
            timeout: seconds to wait for clients, tasks and the broker to close.
            restart: as for :meth:`stop_async`.

        Raises:
            RuntimeError: called on the gateway's own loop (await :meth:`stop_async` there).
            TimeoutError: not stopped within ``timeout`` seconds (the stop goes on).
        """
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
        """Issue a token for ``user`` signed with this gateway's secret.

        Args:
            user: the user id (``sub``), a non-empty str.
            channels: fnmatch-style patterns of the channels ``user`` may subscribe to.
            publish: patterns ``user`` may publish to (``None``: ``channels``).
            presence: patterns ``user`` may join presence on (``None``: ``channels``).
            ttl: seconds until the token expires (``None``: never; tests and local notebooks
                only).

        Raises:
            ValueError: ``user`` is empty or not a str.
        """
        return issue_token(self.secret, user, channels, publish=publish, presence=presence, ttl=ttl)

    @classmethod
    def shared(
        cls,
        *,
        host: str = "127.0.0.1",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        gateway_args: Sequence[str] = (),
        runtime_directory: str | os.PathLike[str] | None = None,
    ) -> SharedGateway:
        """The one gateway every kernel of this user on this machine shares (for Voilà and
        ``marimo run``, where each viewer has a kernel): ``$RTWIDGETS_GATEWAY_URL`` if set, else
        the running one, else a new detached process that stops after ``idle_timeout`` idle
        seconds. Returns a handle with ``.url`` and ``.token(user)`` like a Gateway. See
        :func:`rtwidgets.gateway.discovery.shared_gateway` and ``docs/hosts.md``.

        Args:
            host: the interface a gateway started here listens on.
            idle_timeout: a gateway started here stops after this many seconds without a connection.
            gateway_args: more ``rtwidgets gateway`` options for a gateway started here (no secret).
            runtime_directory: where the runtime file lives (default: the per-user runtime dir).

        Raises:
            SharedGatewayError: a bad ``RTWIDGETS_GATEWAY_*`` environment, an unsafe runtime
                file, or a gateway that failed to start (the message ends with its log).
            ValueError: a non-positive ``idle_timeout``, or ``gateway_args`` setting an option
                this method sets itself.
        """
        return shared_gateway(
            host=host,
            idle_timeout=idle_timeout,
            gateway_args=gateway_args,
            runtime_directory=runtime_directory,
        )

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        """Counters and gauges: connections, channels, subscriptions, messages_published,
        deliveries, errors (total), errors_by_code, slow_consumer_closes, idle_closes,
        auth_failures, outbound_buffer_max_bytes, publish_rate, start_time (unix time of the
        last start, None before the first), uptime, running."""
        out: dict[str, Any] = dict(self._hub.gauges())
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

    # ------------------------------------------------------------------ connections

    async def _handle_connection(self, conn: ServerConnection) -> None:
        assert isinstance(conn, GatewayConnection)
        hub = self._hub
        on_frame = self._handlers.on_frame
        peer = _peer(conn)
        try:
            claims = verify_token(self.secret, token_from(conn.request))
        except AuthError as exc:
            hub.metrics.auth_failures += 1
            log.info("authentication failed for %s: %s", peer, exc)
            await conn.close(CloseCode.AUTH_FAILED, "Authentication failed")
            return
        # websockets keeps the handshake headers for the connection's lifetime (~3.5 KiB);
        # the token was their only use. The request itself stays (websockets reads it).
        if conn.request is not None:
            conn.request.headers = _NO_HEADERS
        if conn.response is not None:
            conn.response.headers = _NO_HEADERS
        conn.track_backlog(hub.backlogged)
        cfg = hub.config
        session = Session(
            client_id=uuid.uuid4().hex,
            claims=claims,
            conn=conn,
            bucket=TokenBucket(cfg.publish_rate, cfg.publish_burst, conn.loop.time()),
        )
        conn.client_id = session.client_id
        hub.sessions[session.client_id] = session
        hub.metrics.connections_total += 1
        log.debug("client %s (user %s) connected from %s", session.client_id, session.user_id, peer)
        hub.send(
            conn,
            {
                "type": "connected",
                "clientId": session.client_id,
                "userId": session.user_id,
                "serverTime": now_ms(),
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
                    await hub.close(session, CloseCode.TOKEN_EXPIRED, "Token expired")
                    break
                await on_frame(session, raw)
        finally:
            hub.sessions.pop(session.client_id, None)
            await hub.cleanup(session)
            log.debug("client %s disconnected (code %s)", session.client_id, conn.close_code)


def _peer(conn: ServerConnection) -> str:
    try:
        addr = conn.remote_address
    except Exception:
        return "?"
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)
