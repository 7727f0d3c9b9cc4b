"""asyncio realtime client: a thin I/O layer over the sans-I/O cores.

:class:`RealtimeConnection` drives :class:`~rtwidgets.core.connection.ConnectionCore` (state
machine, backoff, heartbeat, acks, offline queue) and a
:class:`~rtwidgets.core.channel.ChannelManager` (resume position, exactly-once delivery,
presence) over ``websockets.asyncio.client``. It adds only I/O:

* one task per socket (authenticate, open, read frames) and one writer task per socket, both
  in :mod:`rtwidgets.client_socket`, and one loop timer set to ``core.next_deadline()``;
* futures for the caller's awaits, and callbacks. **Callbacks run on the connection's event
  loop**; an exception in a callback is logged and never breaks the connection.

Reconnects are automatic; every channel is resubscribed with its ``lastEventId``/``epoch`` so
messages within the gateway's history are delivered exactly once and in order, and a gap
older than the history calls ``on_reset`` with the channel's snapshot.

The token is sent in the ``Authorization`` header, never in the URL, and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection

from rtwidgets.auth import redact
from rtwidgets.client_errors import (
    AckTimeoutError,
    AuthenticationError,
    ConnectionClosedError,
    ConnectionFailedError,
    QueueFullError,
    RealtimeError,
    ServerError,
    Unsubscribe,
    _call,
    _register,
)
from rtwidgets.client_events import handle_event
from rtwidgets.core.channel import ChannelManager, ChannelOptions, Reset
from rtwidgets.core.connection import (
    ConnectionCore,
    ConnectionEvent,
    ConnectionState,
    ConnectionStats,
    HeartbeatConfig,
    ReconnectConfig,
)
from rtwidgets.protocol import ProtocolError, encode, validate_channel
from rtwidgets.subscription import ChannelHandle, ChannelSubscription

__all__ = [
    "AckTimeoutError",
    "AuthenticationError",
    "ChannelHandle",
    "ChannelSubscription",
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

AuthCallback = Callable[[], "str | Awaitable[str]"]


# ----------------------------------------------------------------------------- connection


class RealtimeConnection:
    """A resilient connection to an rtwidgets gateway (see the module docstring).

    ``token`` or ``auth`` (a callable returning a token, sync or async, called before every
    connection attempt, so expiring tokens are refreshed on reconnect). ``queue_limit``: frames
    held while offline. ``ack_timeout``: seconds to wait for an ack once a frame is written.
    ``rng``: a seeded ``random.Random`` makes the backoff reproducible.

    Args:
        url: the gateway's ``ws://`` or ``wss://`` URL, without a token.
        token: the token, sent in the ``Authorization`` header.
        auth: instead of ``token``: a callable returning one (sync or async), called before
            every connection attempt.
        reconnect: backoff and attempt limit (``None``: :class:`ReconnectConfig`'s defaults).
        heartbeat: client pings (``None``: :class:`HeartbeatConfig`'s defaults).
        queue_limit: frames held while offline (>= 0); one more raises
            :class:`QueueFullError`.
        ack_timeout: seconds (> 0) to wait for an ack once a frame is written.
        open_timeout: seconds (> 0) for the socket to open and the ``connected`` frame to come.
        max_messages: messages each channel handle keeps (>= 1).
        rng: the backoff's random source (``None``: a fresh ``random.Random``).

    Raises:
        ValueError: both ``token`` and ``auth``, a URL that is not ``ws://``/``wss://``, or an
            option out of range.
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
        self._subscriptions: dict[str, ChannelSubscription] = {}
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
        self._op_channel: dict[int, tuple[str, ChannelSubscription]] = {}
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
    def channels(self) -> dict[str, ChannelSubscription]:
        """The channels this connection is subscribed to (one subscription each, however many
        handles share it)."""
        return dict(self._subscriptions)

    def stats(self) -> ConnectionStats:
        """Snapshot of the connection (rtt, queue size, pending acks, attempts, next retry, ...)."""
        return self._core.stats(self._now())

    def __repr__(self) -> str:
        return (
            f"<RealtimeConnection {redact(self.url)} {self.state.value} channels={len(self._subscriptions)}>"
        )

    def on_state_change(
        self, cb: Callable[[ConnectionState, ConnectionState, str | None], Any]
    ) -> Unsubscribe:
        """``cb(current, previous, reason)`` on every state change.

        Args:
            cb: called on the connection's loop with the new and old :class:`ConnectionState`
                and the reason (or ``None``); an exception it raises is logged.

        Returns:
            A function that removes ``cb`` (idempotent).
        """
        return _register(self._on_state, cb)

    def on_error(self, cb: Callable[[RealtimeError], Any]) -> Unsubscribe:
        """``cb(error)`` for connection-level problems (auth, open failures, heartbeat, server
        errors not tied to an operation, queue overflow, max attempts).

        Args:
            cb: called on the connection's loop with the :class:`RealtimeError`; an exception
                it raises is logged.

        Returns:
            A function that removes ``cb`` (idempotent).
        """
        return _register(self._on_error, cb)

    def on_event(self, cb: Callable[[Any], Any]) -> Unsubscribe:
        """``cb(event)`` for every core event (connection and channel events), for inspectors.

        Args:
            cb: called on the connection's loop with each event; an exception it raises is
                logged.

        Returns:
            A function that removes ``cb`` (idempotent).
        """
        return _register(self._on_event, cb)

    async def wait_for_state(self, *states: ConnectionState, timeout: float = 10.0) -> ConnectionState:
        """Wait until the connection is in one of ``states``; return it.

        Args:
            *states: the :class:`ConnectionState` values to wait for.
            timeout: seconds to wait.

        Raises:
            TimeoutError: in none of ``states`` within ``timeout`` seconds.
        """
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

        Args:
            timeout: seconds to wait (``None``: as long as retries go on).

        Raises:
            AuthenticationError: the gateway refused the token.
            ConnectionFailedError: retries are exhausted or the gateway closed for good.
            TimeoutError: not connected within ``timeout`` seconds.
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
        for sub in list(self._subscriptions.values()):
            sub._closing = True
        self._core.disconnect(self._now())
        self._pump()
        for sub in list(self._subscriptions.values()):
            self._drop_channel(sub)
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
        """Subscribe and wait until the subscription is up; returns a new :class:`ChannelHandle`.

        ``history``: receive the newest N stored messages first (replayed through ``on_message``);
        ``state``: receive the keyed state (``handle.state``); ``presence``: join the member list
        with ``presence_data``.

        Every call returns its own handle, also for a channel already subscribed: the connection
        keeps one gateway subscription per channel, and each handle gets what a fresh subscriber
        would (its own history and keyed state, every message from then on); unsubscribing one
        handle never affects the others. Presence is one member per connection while any handle
        wants it, with every handle's ``presence_data`` merged.

        Args:
            channel: the channel name.
            presence: join the channel's member list.
            presence_data: this handle's presence data (a dict).
            history: how many of the newest stored messages to receive first (>= 0).
            state: receive the channel's keyed state.
            on_message: called with every ``message`` frame, on the connection's loop.
            on_presence: called with every presence event.
            on_reset: called with a :class:`~rtwidgets.core.channel.Reset` when history could
                not be recovered after a reconnect.
            max_messages: messages the handle keeps (``None``: the connection's
                ``max_messages``).

        Raises:
            ValueError: a bad channel name or option, or ``presence_data`` giving a key another
                handle of this connection on the channel set to a different value.
            ServerError: the gateway refused (e.g. ``forbidden``).
            ConnectionClosedError: the connection is closed, or closed meanwhile.
        """
        try:
            validate_channel(channel)
        except ProtocolError as exc:
            raise ValueError(exc.reason) from None
        ChannelOptions(presence=presence, presence_data=presence_data, history=history, state=state)
        self._bind_loop()
        if self.state in (ConnectionState.DISCONNECTED, ConnectionState.FAILED):
            raise ConnectionClosedError(f"connection is {self.state.value}; call connect() first")
        sub = self._subscriptions.get(channel)
        while sub is not None and sub._leaving:
            # Its last handle is unsubscribing: let that finish, then subscribe afresh.
            await asyncio.shield(sub.gone)
            sub = self._subscriptions.get(channel)
        is_new = sub is None
        if sub is None:
            sub = ChannelSubscription(self, self._channels.add(channel))
        handle = sub.add_handle(
            history=history,
            state=state,
            presence=presence,
            presence_data=presence_data,
            max_messages=max_messages or self.max_messages,
        )  # on a new subscription nothing can conflict: it is registered only after this
        if is_new:
            self._subscriptions[channel] = sub
            sub.send_subscribe(priority=False)
        if on_message is not None:
            handle.on_message(on_message)
        if on_presence is not None:
            handle.on_presence(on_presence)
        if on_reset is not None:
            handle.on_reset(on_reset)
        await asyncio.shield(handle._ready)
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

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
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

    def _loop_future(self) -> asyncio.Future[Any]:
        assert self._loop is not None, "bound to a loop before any channel exists"
        return self._loop.create_future()

    def _drop_channel(self, sub: ChannelSubscription) -> None:
        if self._subscriptions.get(sub.name) is sub:
            del self._subscriptions[sub.name]
            self._channels.remove(sub.name)
        sub.dropped()

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

    # ------------------------------------------------------------------ internals: events

    def _report(self, error: RealtimeError) -> None:
        self.last_error = error
        _call(self._on_error, error)

    def _handle(self, ev: ConnectionEvent) -> None:
        handle_event(self, ev)
