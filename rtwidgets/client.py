"""asyncio realtime client: a thin I/O layer over the sans-I/O cores.

:class:`RealtimeConnection` drives :class:`~rtwidgets.core.connection.ConnectionCore` (state
machine, backoff, heartbeat, acks, offline queue) and a
:class:`~rtwidgets.core.channel.ChannelManager` (resume position, exactly-once delivery,
presence) over ``websockets.asyncio.client``. It adds only I/O:

* one task per socket (authenticate, open, read frames), one writer task per socket, and one
  timer task that sleeps until ``core.next_deadline()``;
* futures for the caller's awaits, and callbacks. **Callbacks run on the connection's event
  loop**; an exception in a callback is logged and never breaks the connection.

Reconnects are automatic; every channel is resubscribed with its ``lastEventId``/``epoch`` so
messages within the gateway's history are delivered exactly once and in order, and a gap
older than the history calls ``on_reset`` with the channel's snapshot.

The token is sent in the ``Authorization`` header, never in the URL, and never logged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtwidgets.auth import install_redacting_filter, redact
from rtwidgets.core.channel import (
    ChannelCore,
    ChannelEvent,
    ChannelManager,
    ChannelMessage,
    ChannelOptions,
    ChannelState,
    EpochChanged,
    Reset,
    SyncReceived,
)
from rtwidgets.core.connection import (
    AckReceived,
    CloseSocket,
    ConnectionCore,
    ConnectionEvent,
    ConnectionState,
    ConnectionStats,
    Error,
    HeartbeatConfig,
    Message,
    OpenSocket,
    Operation,
    QueueOverflow,
    ReconnectConfig,
    SendFailed,
    Sent,
    StateChanged,
)
from rtwidgets.core.presence import MemberJoined, MemberLeft, MemberUpdated, PresenceSynced
from rtwidgets.protocol import CloseCode, ProtocolError, encode, parse_server_frame, validate_channel

__all__ = [
    "AckTimeoutError",
    "AuthenticationError",
    "ChannelHandle",
    "ConnectionClosedError",
    "ConnectionFailedError",
    "ConnectionState",
    "HeartbeatConfig",
    "QueueFullError",
    "RealtimeConnection",
    "RealtimeError",
    "ReconnectConfig",
    "ServerError",
]

log = logging.getLogger("rtwidgets.client")

_RESYNC_ATTEMPTS = 10  # sync retries (0.1 s doubling to 2 s) after an epoch change

# The websockets library logs through this logger (not "websockets.client"), so tokens are redacted.
_ws_log = install_redacting_filter("rtwidgets.client.websockets")

AuthCallback = Callable[[], "str | Awaitable[str]"]
Unsubscribe = Callable[[], None]


# ----------------------------------------------------------------------------- errors


class RealtimeError(Exception):
    """Base class of every client error. ``code`` is machine-readable."""

    code: str = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class AuthenticationError(RealtimeError):
    """The gateway refused the token (close 4001 or HTTP 401/403). Not retried."""

    code = "auth_failed"


class ConnectionClosedError(RealtimeError):
    """The connection closed (or was never open) before the operation completed."""

    code = "connection_closed"


class ConnectionFailedError(RealtimeError):
    """Reconnection gave up (max attempts) or the gateway closed for good."""

    code = "connection_failed"


class QueueFullError(RealtimeError):
    """The offline queue is full; the frame was not queued."""

    code = "queue_full"


class AckTimeoutError(RealtimeError, TimeoutError):
    """No ack arrived within ``ack_timeout``; the gateway may or may not have applied it."""

    code = "ack_timeout"


class ServerError(RealtimeError):
    """The gateway answered with an ``error`` frame; ``code`` is its ``ErrorCode`` value."""

    def __init__(self, code: str, reason: str, frame: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {reason}", code)
        self.reason = reason
        self.frame = frame


def _error_from_failed(ev: SendFailed) -> RealtimeError:
    if ev.code == "ack_timeout":
        return AckTimeoutError(f"{ev.op.type}: {ev.reason}")
    if ev.code == "queue_full":
        return QueueFullError(f"{ev.op.type}: {ev.reason}")
    if ev.code == "connection_closed":
        return ConnectionClosedError(f"{ev.op.type}: {ev.reason}")
    return ServerError(ev.code, ev.reason)


def _error_from_event(ev: Error) -> RealtimeError:
    if ev.code == "auth_failed":
        return AuthenticationError(ev.message)
    if ev.code in ("max_attempts", "closed_by_server"):
        return ConnectionFailedError(ev.message, ev.code)
    if ev.frame is not None and ev.frame.get("type") == "error":
        return ServerError(ev.code, ev.message, ev.frame)
    return RealtimeError(ev.message, ev.code)


def _call(callbacks: list[Callable[..., Any]], *args: Any) -> None:
    for cb in list(callbacks):
        try:
            cb(*args)
        except Exception:  # a broken UI callback must not break the connection
            log.exception("rtwidgets callback %r raised", cb)


def _register(callbacks: list[Callable[..., Any]], cb: Callable[..., Any]) -> Unsubscribe:
    callbacks.append(cb)

    def unsubscribe() -> None:
        if cb in callbacks:
            callbacks.remove(cb)

    return unsubscribe


def _settle(fut: asyncio.Future[Any] | None, result: Any = None, exc: BaseException | None = None) -> None:
    if fut is None or fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


# ----------------------------------------------------------------------------- channel handle


class ChannelHandle:
    """One subscribed channel of a :class:`RealtimeConnection` (create with ``conn.subscribe``).

    Attributes read the channel's live state: ``messages`` (bounded deque, newest last),
    ``members`` (presence member dicts), ``users`` (distinct user ids), ``last_event_id``,
    ``epoch``, ``offset``, ``state`` (keyed state: key -> latest frame, when subscribed with
    ``state=True``), ``status`` (:class:`ChannelState`).
    """

    def __init__(self, conn: RealtimeConnection, core: ChannelCore, max_messages: int) -> None:
        self._conn = conn
        self._core = core
        self.name = core.name
        self.messages: deque[dict[str, Any]] = deque(maxlen=max_messages)
        self._on_message: list[Callable[[dict[str, Any]], Any]] = []
        self._on_presence: list[Callable[[Any], Any]] = []
        self._on_reset: list[Callable[[Reset], Any]] = []
        self._on_event: list[Callable[[ChannelEvent], Any]] = []
        self._on_error: list[Callable[[RealtimeError], Any]] = []
        self._sub_op: Operation | None = None
        self._subscribed: asyncio.Future[None] | None = None
        self._ever_subscribed = False
        self._leaving = False  # unsubscribe() called
        self._closing = False  # no longer accepting acks/resubscribes
        self._last_sync: dict[str, Any] | None = None
        self._waiters: list[tuple[Callable[[ChannelHandle], bool], asyncio.Future[None]]] = []

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> ChannelState:
        return self._core.state

    @property
    def options(self) -> ChannelOptions:
        return self._core.options

    @property
    def members(self) -> list[dict[str, Any]]:
        return self._core.presence.members()

    @property
    def users(self) -> list[str]:
        return self._core.presence.users()

    @property
    def last_event_id(self) -> str | None:
        return self._core.last_event_id

    @property
    def epoch(self) -> str | None:
        return self._core.epoch

    @property
    def offset(self) -> int | None:
        return self._core.last_offset

    @property
    def state(self) -> dict[str, Any] | None:
        """Keyed state (key -> latest message frame) when subscribed with ``state=True``."""
        return self._core.keyed_state

    @property
    def presence_data(self) -> dict[str, Any] | None:
        return self._core.presence_data

    def stats(self) -> dict[str, Any]:
        c = self._core
        return {
            "channel": self.name,
            "status": c.state.value,
            "delivered": c.delivered,
            "duplicates": c.duplicates,
            "gaps": c.gaps,
            "resets": c.resets,
            "members": len(c.presence),
            "epoch": c.epoch,
            "offset": c.last_offset,
            "last_event_id": c.last_event_id,
        }

    def __repr__(self) -> str:
        return f"<ChannelHandle {self.name!r} {self.status.value} offset={self.offset}>"

    # ------------------------------------------------------------------ callbacks

    def on_message(self, cb: Callable[[dict[str, Any]], Any]) -> Unsubscribe:
        """``cb(frame)`` for each new message (``frame['data']``, ``senderId``, ``eventId``, ...)."""
        return _register(self._on_message, cb)

    def on_presence(self, cb: Callable[[Any], Any]) -> Unsubscribe:
        """``cb(event)`` with a ``MemberJoined``/``MemberLeft``/``MemberUpdated``/``PresenceSynced``."""
        return _register(self._on_presence, cb)

    def on_reset(self, cb: Callable[[Reset], Any]) -> Unsubscribe:
        """``cb(reset)`` when continuity was lost: rebuild from ``reset.state`` and ``reset.events``."""
        return _register(self._on_reset, cb)

    def on_event(self, cb: Callable[[ChannelEvent], Any]) -> Unsubscribe:
        """``cb(event)`` for every channel event (messages, duplicates, gaps, resets, presence, status)."""
        return _register(self._on_event, cb)

    def on_error(self, cb: Callable[[RealtimeError], Any]) -> Unsubscribe:
        """``cb(error)`` when a resubscribe is refused or the gateway reports an error for this channel."""
        return _register(self._on_error, cb)

    async def wait_for(self, predicate: Callable[[ChannelHandle], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds (re-checked after every channel event);
        ``TimeoutError`` after ``timeout`` seconds."""
        if predicate(self):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"condition on channel {self.name!r} not met within {timeout} s") from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    # ------------------------------------------------------------------ operations

    async def publish(
        self,
        data: Any,
        *,
        key: str | None = None,
        ephemeral: bool = False,
        ack: bool = True,
        msg_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Publish ``data``. With ``ack`` (default) return the gateway's ack (``eventId``, ``offset``,
        ``duplicate`` if it was a retry already stored) or raise a :class:`RealtimeError`.
        ``ack=False`` is at-most-once: it returns once the frame is handed to the socket writer,
        and a frame not yet written when the socket dies is lost; it raises
        :class:`ConnectionClosedError` only if the frame never reached the writer.

        Stored publishes carry a ``msgId`` (a fresh UUID unless given), so a publish in flight
        when the connection drops is resent after reconnecting and stored exactly once. Offline,
        the publish waits in the bounded queue (:class:`QueueFullError` when full).
        """
        if self.status in (ChannelState.UNSUBSCRIBED, ChannelState.UNSUBSCRIBING):
            raise ConnectionClosedError(f"channel {self.name!r} is not subscribed")
        if ephemeral and key is not None:
            raise ValueError("an ephemeral message cannot carry a key (it is not stored)")
        if not ephemeral and msg_id is None:
            msg_id = uuid.uuid4().hex
        frame = self._core.publish_frame(data, key=key, ephemeral=ephemeral, msg_id=msg_id)
        return await self._conn._request(frame, ack=ack, retry=ack and not ephemeral)

    async def update_presence(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Replace this client's presence data (needs ``presence=True``); kept across reconnects."""
        frame = self._core.presence_update_frame(data)
        return await self._conn._request(frame, ack=True, retry=True)

    async def sync(self) -> dict[str, Any]:
        """Ask the gateway for everything after ``last_event_id``; returns the ``sync_response``.

        A delta is delivered through ``on_message`` (deduplicated); a snapshot calls ``on_reset``.
        """
        self._last_sync = None
        await self._conn._request(self._core.sync_frame(), ack=True)
        if self._last_sync is None:
            raise ServerError("internal", "the gateway acked sync without a sync_response")
        return self._last_sync

    async def unsubscribe(self) -> None:
        """Leave the channel (idempotent). Presence leaves with it."""
        conn = self._conn
        if self._leaving or self._closing or conn._handles.get(self.name) is not self:
            return
        self._leaving = True
        if self._subscribed is not None and not self._subscribed.done():
            # Let an in-flight subscribe finish first so its ack cannot land after we left.
            await asyncio.wait([self._subscribed], timeout=conn.ack_timeout)
        self._closing = True
        core_state = conn._core.state
        if self.status is ChannelState.SUBSCRIBED and core_state is ConnectionState.CONNECTED:
            frame, events = self._core.unsubscribe_frame()
            conn._dispatch_channel(self, events)
            try:
                await conn._request(frame, ack=True)
            except (ServerError, ConnectionClosedError) as exc:
                # not_subscribed / closed: either way the gateway no longer has us on it.
                log.debug("unsubscribe of %r ended with %s", self.name, exc)
        elif self._sub_op is not None:
            conn._core.cancel(self._sub_op)
        conn._drop_channel(self)

    # ------------------------------------------------------------------ internals

    def _notify(self) -> None:
        for predicate, fut in list(self._waiters):
            if fut.done():
                continue
            try:
                ok = predicate(self)
            except Exception as exc:
                fut.set_exception(exc)
                continue
            if ok:
                fut.set_result(None)


# ----------------------------------------------------------------------------- connection


class RealtimeConnection:
    """A resilient connection to an rtwidgets gateway (see the module docstring).

    ``token`` or ``auth`` (a callable returning a token, sync or async, called before every
    connection attempt, so expiring tokens are refreshed on reconnect). ``queue_limit``: frames
    held while offline. ``ack_timeout``: seconds to wait for an ack once a frame is written.
    ``rng``: a seeded ``random.Random`` makes the backoff reproducible.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        auth: AuthCallback | None = None,
        reconnect: ReconnectConfig | None = None,
        heartbeat: HeartbeatConfig | None = None,
        queue_limit: int = 1000,
        ack_timeout: float = 5.0,
        open_timeout: float = 10.0,
        max_messages: int = 1000,
        rng: random.Random | None = None,
    ) -> None:
        if token is not None and auth is not None:
            raise ValueError("pass either token or auth, not both")
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must start with ws:// or wss:// (got {redact(url)!r})")
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self.url = url
        self._token = token
        self._auth = auth
        self.ack_timeout = ack_timeout
        self.max_messages = max_messages
        self._core = ConnectionCore(
            reconnect,
            heartbeat,
            queue_limit=queue_limit,
            ack_timeout=ack_timeout,
            open_timeout=open_timeout,
            rng=rng,
        )
        self._channels = ChannelManager()
        self._handles: dict[str, ChannelHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: ClientConnection | None = None
        self._ws_generation = 0
        self._opening: tuple[int, asyncio.Task[Any]] | None = None
        self._outbox: asyncio.Queue[str] | None = None
        # One loop timer, always set to core.next_deadline() (no task: nothing to cancel or leak).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._op_channel: dict[int, tuple[str, ChannelHandle]] = {}
        self._connect_waiters: list[asyncio.Future[None]] = []
        self._on_state: list[Callable[[ConnectionState, ConnectionState, str | None], Any]] = []
        self._on_error: list[Callable[[RealtimeError], Any]] = []
        self._on_event: list[Callable[[Any], Any]] = []
        self.last_error: RealtimeError | None = None
        self._state_waiters: list[tuple[tuple[ConnectionState, ...], asyncio.Future[None]]] = []
        self._pumping = False

    # ------------------------------------------------------------------ public state

    @property
    def state(self) -> ConnectionState:
        return self._core.state

    @property
    def client_id(self) -> str | None:
        return self._core.client_id

    @property
    def user_id(self) -> str | None:
        return self._core.user_id

    @property
    def channels(self) -> dict[str, ChannelHandle]:
        return dict(self._handles)

    def stats(self) -> ConnectionStats:
        """Snapshot of the connection (rtt, queue size, pending acks, attempts, next retry, ...)."""
        return self._core.stats(self._now())

    def __repr__(self) -> str:
        return f"<RealtimeConnection {redact(self.url)} {self.state.value} channels={len(self._handles)}>"

    def on_state_change(
        self, cb: Callable[[ConnectionState, ConnectionState, str | None], Any]
    ) -> Unsubscribe:
        """``cb(current, previous, reason)`` on every state change."""
        return _register(self._on_state, cb)

    def on_error(self, cb: Callable[[RealtimeError], Any]) -> Unsubscribe:
        """``cb(error)`` for connection-level problems (auth, open failures, heartbeat, server
        errors not tied to an operation, queue overflow, max attempts)."""
        return _register(self._on_error, cb)

    def on_event(self, cb: Callable[[Any], Any]) -> Unsubscribe:
        """``cb(event)`` for every core event (connection and channel events), for inspectors."""
        return _register(self._on_event, cb)

    async def wait_for_state(self, *states: ConnectionState, timeout: float = 10.0) -> ConnectionState:
        """Wait until the connection is in one of ``states``; return it."""
        self._bind_loop()
        if self.state in states:
            return self.state
        assert self._loop is not None
        entry = (states, self._loop.create_future())
        self._state_waiters.append(entry)
        try:
            await asyncio.wait_for(entry[1], timeout)
        except asyncio.TimeoutError:
            wanted = ", ".join(s.value for s in states)
            raise TimeoutError(
                f"connection not {wanted} within {timeout} s (is {self.state.value})"
            ) from None
        finally:
            if entry in self._state_waiters:
                self._state_waiters.remove(entry)
        return self.state

    # ------------------------------------------------------------------ lifecycle

    async def connect(self, *, timeout: float | None = None) -> None:
        """Connect and wait until the gateway accepted us.

        Failed attempts are retried with backoff. Raises :class:`AuthenticationError` if the
        token is refused, :class:`ConnectionFailedError` when retries are exhausted, and
        ``TimeoutError`` after ``timeout`` seconds (the connection is then closed).
        """
        self._bind_loop()
        if self.state is ConnectionState.CONNECTED:
            return
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._connect_waiters.append(waiter)
        self.last_error = None
        self._core.connect(self._now())
        self._pump()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise TimeoutError(f"not connected to {redact(self.url)} within {timeout} s") from None
        except RealtimeError:
            # Terminal (auth refused, retries exhausted): nothing is scheduled, end our tasks.
            await self._stop_tasks()
            raise
        finally:
            if waiter in self._connect_waiters:
                self._connect_waiters.remove(waiter)
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled():
                waiter.exception()  # retrieved (re-raised above or superseded by the timeout)

    async def close(self) -> None:
        """Close on purpose (code 1000): fails what is queued, drops every channel, ends all tasks."""
        if self._loop is None:
            return
        for handle in list(self._handles.values()):
            handle._closing = True
        self._core.disconnect(self._now())
        self._pump()
        for handle in list(self._handles.values()):
            self._drop_channel(handle)
        await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        """Cancel the timer and wait for socket tasks (a graceful close gets a few seconds)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    def simulate_drop(self) -> bool:
        """Abort the TCP connection without a close handshake, as a network failure would.

        For demos and recovery tests (call on the connection's loop): the core sees an abnormal
        close (1006) and reconnects with backoff, resuming every channel. False if no socket is open.
        """
        ws = self._ws
        if ws is None:
            return False
        ws.transport.abort()
        return True

    async def __aenter__(self) -> RealtimeConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ channels

    async def subscribe(
        self,
        channel: str,
        *,
        presence: bool = False,
        presence_data: dict[str, Any] | None = None,
        history: int = 0,
        state: bool = False,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        on_presence: Callable[[Any], Any] | None = None,
        on_reset: Callable[[Reset], Any] | None = None,
        max_messages: int | None = None,
    ) -> ChannelHandle:
        """Subscribe and wait for the gateway's ack; returns the :class:`ChannelHandle`.

        ``history``: receive the newest N stored messages first (replayed through ``on_message``);
        ``state``: receive the keyed state (``handle.state``); ``presence``: join the member list
        with ``presence_data``. Subscribing twice to the same channel with the same options returns
        the same handle (callbacks are added); different options raise ``ValueError``.
        Raises :class:`ServerError` (e.g. ``forbidden``) or :class:`ConnectionClosedError`.
        """
        try:
            validate_channel(channel)
        except ProtocolError as exc:
            raise ValueError(exc.reason) from None
        self._bind_loop()
        if self.state in (ConnectionState.DISCONNECTED, ConnectionState.FAILED):
            raise ConnectionClosedError(f"connection is {self.state.value}; call connect() first")
        options = ChannelOptions(presence=presence, presence_data=presence_data, history=history, state=state)
        handle = self._handles.get(channel)
        if handle is None:
            core = self._channels.add(channel, options)
            handle = ChannelHandle(self, core, max_messages or self.max_messages)
            self._handles[channel] = handle
            self._send_subscribe(handle, priority=False)
        elif handle._leaving:
            raise ValueError(f"channel {channel!r} is being unsubscribed; await unsubscribe() first")
        elif handle.options != options:
            raise ValueError(f"channel {channel!r} is already subscribed with different options")
        if on_message is not None:
            handle.on_message(on_message)
        if on_presence is not None:
            handle.on_presence(on_presence)
        if on_reset is not None:
            handle.on_reset(on_reset)
        if handle._subscribed is not None:
            await asyncio.shield(handle._subscribed)
        return handle

    # ------------------------------------------------------------------ internals: plumbing

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("a RealtimeConnection is bound to the event loop it first connected on")

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _request(self, frame: dict[str, Any], *, ack: bool, retry: bool = False) -> Any:
        """Send through the core and await the op's completion."""
        self._bind_loop()
        assert self._loop is not None
        op = self._core.send(frame, now=self._now(), ack=ack, retry=retry)
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._futures[op.op_id] = fut
        self._pump()
        try:
            return await fut
        finally:
            self._futures.pop(op.op_id, None)

    def _send_subscribe(self, handle: ChannelHandle, *, priority: bool) -> None:
        assert self._loop is not None
        frame, events = handle._core.subscribe_frame()
        self._dispatch_channel(handle, events)
        op = self._core.send(frame, now=self._now(), ack=True, priority=priority)
        handle._sub_op = op
        self._op_channel[op.op_id] = ("subscribe", handle)
        if handle._subscribed is None or handle._subscribed.done():
            handle._subscribed = self._loop.create_future()
        self._pump()

    def _drop_channel(self, handle: ChannelHandle) -> None:
        if self._handles.get(handle.name) is handle:
            del self._handles[handle.name]
            self._channels.remove(handle.name)
        handle._closing = True
        if handle._sub_op is not None:
            self._core.cancel(handle._sub_op)
            self._op_channel.pop(handle._sub_op.op_id, None)
            handle._sub_op = None
        self._dispatch_channel(handle, handle._core.on_unsubscribed())
        sub = handle._subscribed
        _settle(sub, exc=ConnectionClosedError(f"channel {handle.name!r} was closed"))
        if sub is not None and sub.done() and not sub.cancelled():
            sub.exception()  # mark retrieved: nobody may be awaiting it

    def _pump(self) -> None:
        """Process everything the core produced, then hand frames to the writer."""
        if self._pumping:
            return  # called from an event handler: the outer loop picks up what it produced
        self._pumping = True
        try:
            self._drain()
        finally:
            self._pumping = False

    def _drain(self) -> None:
        """Handle the core's events and move its frames to the writer, until both are empty."""
        while True:
            events = self._core.events()
            if events:
                for ev in events:
                    try:
                        self._handle(ev)
                    except Exception:
                        log.exception("rtwidgets internal error handling %r", type(ev).__name__)
                continue
            if self._outbox is None:
                # No socket to write to: leave the frames in the core (its contract). Reporting the
                # socket's end (on_close) fails them there, so every caller hears about its frame.
                break
            frames = self._core.data_to_send()  # Sent events for ack=False ops: next iteration
            if not frames:
                break
            for frame in frames:
                self._outbox.put_nowait(encode(frame))
        self._reschedule()

    def _reschedule(self) -> None:
        """Point the loop timer at the core's next deadline."""
        deadline = self._core.next_deadline()
        if deadline == self._timer_at or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        due = self._timer_at
        self._timer = self._timer_at = None
        # The loop may fire a timer up to one clock resolution early; it is due, so tick at it.
        now = self._loop.time()
        self._core.tick(now if due is None else max(now, due))
        self._pump()

    async def _token_now(self) -> str | None:
        if self._auth is None:
            return self._token
        value = self._auth()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str):
            raise TypeError("auth callback must return a token string")
        return value

    async def _socket_main(self, generation: int) -> None:
        """Open socket ``generation``, feed its frames to the core, report its end."""
        core = self._core
        try:
            token = await self._token_now()
            headers = {"Authorization": f"Bearer {token}"} if token else None
            ws = await ws_connect(
                self.url, additional_headers=headers, open_timeout=None, max_size=None, logger=_ws_log
            )
        except asyncio.CancelledError:
            raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            code = int(CloseCode.AUTH_FAILED) if status in (401, 403) else None
            core.on_open_failed(f"HTTP {status}", self._now(), close_code=code, generation=generation)
            self._pump()
            return
        except Exception as exc:
            message = redact(f"{type(exc).__name__}: {exc}")  # a token could sit in a user's URL
            core.on_open_failed(message, self._now(), generation=generation)
            self._pump()
            return
        if generation != core.generation or core.state is not ConnectionState.CONNECTING:
            await ws.close()  # the core gave up on this attempt meanwhile
            return
        self._ws = ws
        self._ws_generation = generation
        self._opening = None
        outbox: asyncio.Queue[str] = asyncio.Queue()
        self._outbox = outbox
        writer = self._spawn(self._writer_main(ws, outbox))
        core.on_open(self._now(), generation=generation)
        self._pump()
        try:
            async for raw in ws:
                try:
                    frame = parse_server_frame(raw)
                except ProtocolError as exc:
                    self._report(RealtimeError(f"bad frame from gateway: {exc.reason}", "bad_frame"))
                    continue
                core.on_frame(frame, self._now(), generation=generation)
                self._pump()
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            if self._outbox is outbox:
                self._outbox = None
            if self._ws is ws:
                self._ws = None
        code = None if ws.close_code is None else int(ws.close_code)
        reason = ws.close_reason or ""
        core.on_close(code, reason, self._now(), generation=generation)
        self._pump()

    async def _writer_main(self, ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        try:
            while True:
                data = await outbox.get()
                await ws.send(data)
        except ConnectionClosed:
            pass  # the reader reports the close

    async def _close_socket(self, ws: ClientConnection, code: int, reason: str) -> None:
        if code == CloseCode.NORMAL:
            ws.close_timeout = 2.0
            await ws.close(code, reason)
        else:
            # The link is presumed dead (heartbeat/open timeout): do not wait for a handshake.
            ws.transport.abort()

    # ------------------------------------------------------------------ internals: events

    def _report(self, error: RealtimeError) -> None:
        self.last_error = error
        _call(self._on_error, error)

    def _handle(self, ev: ConnectionEvent) -> None:
        _call(self._on_event, ev)
        if isinstance(ev, StateChanged):
            self._on_state_changed(ev)
        elif isinstance(ev, Message):
            self._on_message_frame(ev.frame)
        elif isinstance(ev, AckReceived):
            self._on_ack(ev)
        elif isinstance(ev, Sent):
            _settle(self._futures.get(ev.op.op_id), None)
        elif isinstance(ev, SendFailed):
            self._on_send_failed(ev)
        elif isinstance(ev, QueueOverflow):
            self._report(QueueFullError(f"offline queue full ({ev.limit} frames); {ev.op.type} refused"))
        elif isinstance(ev, Error):
            error = _error_from_event(ev)
            name = ev.frame.get("channel") if ev.frame is not None else None
            handle = self._handles.get(name) if isinstance(name, str) else None
            if handle is not None:
                _call(handle._on_error, error)
            self._report(error)
        elif isinstance(ev, OpenSocket):
            self._opening = (ev.generation, self._spawn(self._socket_main(ev.generation)))
        elif isinstance(ev, CloseSocket):
            ws = self._ws
            if ws is not None and self._ws_generation == ev.generation:
                self._spawn(self._close_socket(ws, ev.code, ev.reason))
            elif self._opening is not None and self._opening[0] == ev.generation:
                self._opening[1].cancel()  # still authenticating or handshaking: abandon it

    def _on_state_changed(self, ev: StateChanged) -> None:
        current = ev.current
        if ev.previous is ConnectionState.CONNECTED or current in (
            ConnectionState.RECONNECTING,
            ConnectionState.DISCONNECTED,
            ConnectionState.FAILED,
        ):
            for ch_ev in self._channels.on_connection_lost():
                handle = self._handles.get(ch_ev.channel)
                if handle is not None:
                    self._dispatch_channel(handle, [ch_ev])
        if current is ConnectionState.CONNECTING:
            # Resubscribe every channel that has no subscribe queued, ahead of queued publishes.
            for handle in list(self._handles.values()):
                if handle._sub_op is None and not handle._closing:
                    self._send_subscribe(handle, priority=True)
        _call(self._on_state, current, ev.previous, ev.reason)
        if current is ConnectionState.CONNECTED:
            for waiter in self._connect_waiters:
                _settle(waiter, None)
        elif current in (ConnectionState.DISCONNECTED, ConnectionState.FAILED):
            error = self.last_error or ConnectionClosedError(f"connection {current.value}: {ev.reason}")
            if isinstance(error, RealtimeError) and error.code not in (
                "auth_failed",
                "max_attempts",
                "closed_by_server",
            ):
                error = ConnectionClosedError(f"connection {current.value}: {ev.reason}")
            for waiter in self._connect_waiters:
                _settle(waiter, exc=error)
            for handle in list(self._handles.values()):
                if not handle._ever_subscribed:
                    # Never got through: fail the subscribe() await and forget the channel.
                    _settle(handle._subscribed, exc=error)
                    self._drop_channel(handle)
        self._notify_state()

    def _notify_state(self) -> None:
        for states, fut in self._state_waiters:
            if self.state in states:
                _settle(fut, None)

    def _on_message_frame(self, frame: dict[str, Any]) -> None:
        name = frame.get("channel")
        handle = self._handles.get(name) if isinstance(name, str) else None
        if handle is None:
            return  # late frame for a channel we left, or a frame type without a channel
        self._dispatch_channel(handle, handle._core.on_frame(frame))

    def _on_ack(self, ev: AckReceived) -> None:
        kind_handle = self._op_channel.pop(ev.op.op_id, None)
        if kind_handle is not None:
            _, handle = kind_handle
            if handle._sub_op is ev.op:
                handle._sub_op = None
            if not handle._closing and self._handles.get(handle.name) is handle:
                handle._ever_subscribed = True
                self._dispatch_channel(handle, handle._core.on_subscribe_ack(ev.frame))
                _settle(handle._subscribed, None)
        _settle(self._futures.get(ev.op.op_id), ev.frame)

    def _on_send_failed(self, ev: SendFailed) -> None:
        kind_handle = self._op_channel.pop(ev.op.op_id, None)
        if kind_handle is not None:
            _, handle = kind_handle
            if handle._sub_op is ev.op:
                handle._sub_op = None
            if ev.code == "connection_closed":
                # The socket dropped (or the connection ended) mid-subscribe: the channel is
                # resubscribed when the next socket opens; a subscribe() still waiting is failed
                # by the state change if the connection ended for good.
                return
            error = _error_from_failed(ev)
            if not handle._closing:
                self._dispatch_channel(handle, handle._core.on_subscribe_failed())
                _call(handle._on_error, error)
                if not (handle._subscribed is None or handle._subscribed.done()):
                    handle._subscribed.set_exception(error)
                else:
                    self._report(error)  # a resubscribe was refused: nobody is awaiting it
                self._drop_channel(handle)
            return
        fut = self._futures.get(ev.op.op_id)
        if fut is None:
            return
        _settle(fut, exc=_error_from_failed(ev))

    def _dispatch_channel(self, handle: ChannelHandle, events: list[ChannelEvent]) -> None:
        if not events:
            return
        for ev in events:
            _call(self._on_event, ev)
            _call(handle._on_event, ev)
            if isinstance(ev, ChannelMessage):
                handle.messages.append(ev.frame)
                _call(handle._on_message, ev.frame)
            elif isinstance(ev, Reset):
                handle.messages.clear()
                handle.messages.extend(ev.events)
                _call(handle._on_reset, ev)
            elif isinstance(ev, MemberJoined | MemberLeft | MemberUpdated | PresenceSynced):
                _call(handle._on_presence, ev)
            elif isinstance(ev, SyncReceived):
                handle._last_sync = ev.frame
            elif isinstance(ev, EpochChanged):
                # The channel's history was replaced under us: fetch the new epoch's snapshot.
                self._spawn(self._resync(handle, ev))
        handle._notify()

    async def _resync(self, handle: ChannelHandle, ev: EpochChanged) -> None:
        log.warning("channel %r moved to a new epoch (history lost); re-syncing", handle.name)
        delay = 0.1
        for attempt in range(_RESYNC_ATTEMPTS):
            if not handle._core.resyncing:
                return  # overtaken (reconnect + resubscribe, unsubscribe): nothing left to do
            try:
                await handle.sync()
                return
            except RealtimeError as exc:
                # 'unavailable': the broker (e.g. a Redis that just restarted) is coming back.
                if exc.code != "unavailable" or attempt == _RESYNC_ATTEMPTS - 1:
                    # Deliver what was held rather than hold it forever; the error tells the
                    # application that continuity is not guaranteed.
                    self._dispatch_channel(handle, handle._core.on_resync_failed())
                    _call(handle._on_error, exc)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
