"""``Channel``: the design's ``useChannel`` hook as a traitlets model
(docs/design.md#channels).

Subscribes once the :class:`~rtwidgets.models.connection.Connection` is connected (the
client re-subscribes by itself after reconnects, resuming from the last event id), keeps
a bounded ``messages`` list and the presence ``members``, and optionally paces incoming
messages through a :class:`~rtwidgets.core.backpressure.BackpressureBuffer` (the
design's ``bufferConfig``, docs/design.md#backpressure). Network events are applied on the runtime thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Hashable
from typing import Any

from traitlets import Bool, Dict, HasTraits, Int, List, Unicode

from rtwidgets.client import ServerError
from rtwidgets.core.backpressure import BackpressureBuffer, BackpressureConfig
from rtwidgets.core.ordering import MessageOrderer, OrderingConfig, OrderingType, message_to_order
from rtwidgets.core.subscribers import presence_conflict
from rtwidgets.errors import ChannelClosedError  # defined there; re-exported from here
from rtwidgets.models._binding import DeadlineTimer, LoopClock, TaskGroup, on_runtime, run_blocking, submit
from rtwidgets.models.connection import Connection
from rtwidgets.protocol import validate_channel
from rtwidgets.runtime import get_runtime

__all__ = ["Channel", "ChannelClosedError"]

Listener = Callable[[dict[str, Any]], None]
log = logging.getLogger("rtwidgets.models")


class Channel(HasTraits):
    """A channel subscription observable from Python.

    ``messages`` holds the last ``max_messages`` ``message`` frames (dicts with ``id``,
    ``data``, ``senderId``, ``clientId``, ``timestamp``, ``offset``...), newest last.
    ``members`` is one dict per connected client (``userId``, ``clientId``, ``data``,
    ``joinedAt``) when ``presence=True``. With ``backpressure=`` incoming messages are
    delivered in paced batches and ``buffer_stats`` counts what was merged or dropped.

    ``ordering`` (on :mod:`rtwidgets.core.ordering`, before listeners and pacing):

    * ``"none"`` (default): as the connection delivers them. Stored messages already come once
      each in offset order (the client drops repeats by offset and resumes after reconnects);
      ephemeral ones as they arrive.
    * ``"fifo"``: each sender's messages (by ``clientId``) in the order it published them (its
      ``seq``), also across paths that could reorder them; a sender's new connection is a new
      stream, starting where it is first seen.
    * ``"total"``: every stored message in the channel's offset order, the same order for every
      subscriber; ephemeral messages (no offset) are delivered as they come.

    A gap (a missing ``seq`` or offset) holds later messages back for at most ``ordering_wait``
    seconds, then is skipped and counted (``ordering_stats['gaps_skipped']``); a message arriving
    after its gap was skipped is counted as ``late`` and not delivered. Each model orders on its
    own: models on one channel may use different orderings.

    Args:
        connection: the :class:`Connection` to subscribe over; the subscription starts once it
            is connected.
        name: the channel (1..200 printable characters, no whitespace, ``*`` or ``?``).
        presence: join the channel's member list.
        presence_data: this client's presence data (a dict); giving it implies ``presence``.
            Other models of this connection on the channel share one member: a key they set
            to a different value is refused.
        history: receive the newest ``history`` stored messages first (``0``: none).
        state: also receive the channel's keyed state on subscribe (``handle.state``).
        backpressure: pace incoming messages into ``messages`` through a
            :class:`~rtwidgets.core.backpressure.BackpressureConfig` (``None``: no pacing).
        ordering: ``"none"``, ``"fifo"`` or ``"total"`` (see above).
        ordering_wait: seconds a gap may hold later messages back before it is skipped.
        key: with ``backpressure``, ``key(frame)`` gives the hashable key by which buffered
            messages are merged (newest per key).
        max_messages: how many messages ``messages`` keeps (>= 1).

    Raises:
        TypeError: ``connection`` is not a :class:`Connection`, ``presence_data`` not a dict or
            ``backpressure`` not a ``BackpressureConfig``.
        ProtocolError: ``name`` is not a valid channel name.
        ValueError: ``max_messages`` < 1, ``history`` < 0 (or either not an int), an unknown
            ``ordering``, ``ordering_wait`` not finite >= 0, or ``presence_data`` conflicting
            with another model's on this channel.
    """

    name = Unicode(read_only=True)
    messages: List[dict[str, Any]] = List(help="last max_messages message frames, newest last")
    members: List[dict[str, Any]] = List(help="presence members, one per clientId")
    users: List[str] = List(help="distinct user ids present")
    is_subscribed = Bool(False)
    error = Unicode("", help="why the subscription or the last operation failed; '' when fine")
    pressure = Unicode("none", help="backpressure level: none|moderate|high")
    buffer_stats = Dict(help="backpressure counters (pushed, delivered, merged, dropped, ...)")
    received = Int(0, help="message frames received (before backpressure)")
    ordering_stats = Dict(help="with ordering: received, delivered, buffered, gaps_skipped, late, ...")

    # Plain attributes, set in __init__ (declared here: other models of the connection read them).
    presence: bool
    presence_data: dict[str, Any]
    _closed: bool

    def __init__(
        self,
        connection: Connection,
        name: str,
        *,
        presence: bool = False,
        presence_data: dict[str, Any] | None = None,
        history: int = 0,
        state: bool = False,
        backpressure: BackpressureConfig | None = None,
        ordering: OrderingType = "none",
        ordering_wait: float = 1.0,
        key: Callable[[dict[str, Any]], Hashable] | None = None,
        max_messages: int = 200,
    ) -> None:
        if not isinstance(connection, Connection):
            raise TypeError(f"connection must be an rtwidgets Connection, got {type(connection).__name__}")
        validate_channel(name)
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError(f"max_messages must be an int >= 1, got {max_messages!r}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be an int >= 0, got {history!r}")
        if presence_data is not None and not isinstance(presence_data, dict):
            raise TypeError("presence_data must be a dict")
        # Several models on one channel of one connection share one presence member: a key two of
        # them set to different values is refused here, at construction, not later on the loop.
        others = [
            m.presence_data
            for m in list(connection.attached)
            if isinstance(m, Channel) and m.name == name and not m._closed and m.presence
        ]
        conflict = presence_conflict(name, others, presence_data)
        if conflict is not None:
            raise ValueError(conflict)
        super().__init__()
        self.set_trait("name", name)
        self.connection = connection
        self.presence = bool(presence or presence_data is not None)
        self.presence_data = dict(presence_data or {})
        self.history = history
        self.want_state = state
        self.max_messages = max_messages
        self._runtime = get_runtime()
        self._loop = self._runtime.loop
        self._tasks = TaskGroup(f"channel {name!r}")
        self._handle: Any = None
        self._subscribing = False
        self._ready: asyncio.Future[Any] | None = None
        self._closed = False
        self._listeners: dict[str, list[Callable[..., None]]] = {"message": [], "presence": [], "reset": []}
        self._handle_unsubs: list[Callable[[], Any]] = []
        self._buffer: BackpressureBuffer[dict[str, Any]] | None = None
        self._buffer_timer: DeadlineTimer | None = None
        self._clock = LoopClock(self._loop)
        if backpressure is not None:
            if not isinstance(backpressure, BackpressureConfig):
                raise TypeError("backpressure must be a rtwidgets.core.backpressure.BackpressureConfig")
            self._buffer = BackpressureBuffer(backpressure, key=key)
            self._buffer_timer = DeadlineTimer(self._loop, self._poll_buffer)
        # Built before traits are touched: a bad ordering/ordering_wait raises here, at construction.
        self.ordering = ordering
        self._orderer: MessageOrderer[dict[str, Any]] | None = None
        self._order_timer: DeadlineTimer | None = None
        if ordering != "none":
            self._orderer = MessageOrderer(OrderingConfig(type=ordering, max_wait_time=ordering_wait))
            self._order_timer = DeadlineTimer(self._loop, self._tick_orderer)
        connection.observe(self._on_connection_state, names=["state"])
        connection.attached.add(self)
        on_runtime(self._setup)

    # ------------------------------------------------------------------ public API

    def publish(
        self,
        data: Any,
        *,
        key: str | None = None,
        ephemeral: bool = False,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> Any:
        """Publish ``data``. ``wait=True`` blocks until the gateway's ack and returns it
        (raises on refusal); ``wait=False`` returns a ``concurrent.futures.Future``.

        Publishing before the subscription is up waits for it (messages queue while offline).

        Args:
            data: the message payload (JSON-serialisable).
            key: store the message as the channel's keyed state under ``key``.
            ephemeral: deliver to current subscribers only, without storing it (no ``key``).
            wait: block for the ack (``True``) or return a future at once (``False``).
            timeout: seconds to wait for the ack when ``wait``.

        Returns:
            The gateway's ack (``eventId``, ``offset``, ...) when ``wait``, else a
            ``concurrent.futures.Future`` of it (which raises what ``wait=True`` would).

        Raises:
            RuntimeError: ``wait=True`` on the runtime thread (it would deadlock).
            TimeoutError: no ack within ``timeout`` seconds.
            ServerError: the gateway refused the message (or the subscription).
            QueueFullError: offline, and the connection's queue is full.
            ChannelClosedError: the model is closed.
            ValueError: ``ephemeral`` together with ``key``.
        """
        if wait:
            self._refuse_blocking("publish")  # before submitting: a refused call sends nothing
        future = submit(self._publish(data, key=key, ephemeral=ephemeral))
        if not wait:
            return future
        return self._wait(future, timeout, "publish")

    def update_presence(self, data: dict[str, Any], *, wait: bool = True, timeout: float = 10.0) -> Any:
        """Replace this client's presence data on the channel (needs ``presence=True``).

        Args:
            data: the new presence data (a dict); kept across reconnects.
            wait: block until the gateway took it (``True``) or return a future (``False``).
            timeout: seconds to wait when ``wait``.

        Returns:
            The gateway's answer when ``wait``, else a ``concurrent.futures.Future`` of it.

        Raises:
            TypeError: ``data`` is not a dict.
            ValueError: the channel was created without presence.
            RuntimeError: ``wait=True`` on the runtime thread (it would deadlock).
            TimeoutError: not done within ``timeout`` seconds.
            ServerError: the gateway refused the subscription.
            ChannelClosedError: the model is closed.
        """
        if not isinstance(data, dict):
            raise TypeError("presence data must be a dict")
        if not self.presence:
            raise ValueError(f"channel {self.name!r} was created without presence=True")
        if wait:
            self._refuse_blocking("update_presence")
        self.presence_data = dict(data)
        future = submit(self._update_presence(dict(data)))
        if not wait:
            return future
        return self._wait(future, timeout, "update_presence")

    def wait_subscribed(self, timeout: float = 10.0) -> Channel:
        """Block until the subscription is acknowledged (raises the refusal if it failed).

        Args:
            timeout: seconds to wait.

        Returns:
            This channel, for chaining.

        Raises:
            RuntimeError: called on the runtime thread (it would deadlock).
            TimeoutError: not subscribed within ``timeout`` seconds.
            ServerError: the gateway refused the subscription (e.g. ``forbidden``).
            ChannelClosedError: the model was closed.
        """

        async def ready() -> None:
            await self._ready_handle()

        self._refuse_blocking("wait_subscribed")
        self._wait(submit(ready()), timeout, "wait_subscribed")
        return self

    def on_message(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(frame)`` on the runtime thread for every message (before pacing).

        Args:
            callback: receives each ``message`` frame (after ``ordering``); it must not block.
                An exception it raises is logged, not propagated.

        Returns:
            A function that removes ``callback`` (idempotent).
        """
        return self._listen("message", callback)

    def on_presence(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(event)`` on the runtime thread after every presence change.

        Args:
            callback: receives the client's presence event; ``members``/``users`` are already
                updated. An exception it raises is logged, not propagated.

        Returns:
            A function that removes ``callback`` (idempotent).
        """
        return self._listen("presence", callback)

    def on_reset(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(snapshot)`` when history could not be recovered after a reconnect.

        Args:
            callback: receives the client's reset snapshot, on the runtime thread. An exception
                it raises is logged, not propagated.

        Returns:
            A function that removes ``callback`` (idempotent).
        """
        return self._listen("reset", callback)

    @property
    def handle(self) -> Any:
        """The client's channel handle once subscribed, else None (runtime loop only)."""
        return self._handle

    def close(self, timeout: float = 10.0) -> None:
        """Unsubscribe, stop timers and listeners (idempotent).

        Args:
            timeout: seconds to wait for the unsubscribe; past it the model is closed anyway
                (the gateway drops the subscription with the socket). On the runtime thread
                the unsubscribe is started and not waited for.
        """
        if self._closed:
            return
        self._closed = True
        self.connection.unobserve(self._on_connection_state, names=["state"])
        if self._runtime.in_runtime_thread():
            submit(self._shutdown())
            return
        # On timeout the socket is gone anyway; the gateway drops the subscription with it.
        with contextlib.suppress(TimeoutError):
            run_blocking(self._shutdown(), timeout, "Channel.close")

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} subscribed={self.is_subscribed} messages={len(self.messages)}>"

    # ------------------------------------------------------------------ helpers (any thread)

    def _listen(self, kind: str, callback: Callable[..., None]) -> Callable[[], None]:
        self._listeners[kind].append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners[kind]:
                self._listeners[kind].remove(callback)

        return unsubscribe

    def _refuse_blocking(self, what: str) -> None:
        """Raise if called on the runtime thread, where blocking would deadlock the loop."""
        if self._runtime.in_runtime_thread():
            raise RuntimeError(
                f"Channel.{what}(wait=True) cannot block on the runtime thread; pass wait=False"
            )

    def _wait(self, future: concurrent.futures.Future[Any], timeout: float, what: str) -> Any:
        self._refuse_blocking(what)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"{what} on channel {self.name!r} did not finish within {timeout} s "
                f"(connection {self.connection.state!r}, subscribed={self.is_subscribed})"
            ) from None

    # ------------------------------------------------------------------ runtime thread

    def _setup(self) -> None:
        self._ready = self._loop.create_future()
        if self._closed:
            self._ready.set_exception(ChannelClosedError(f"channel {self.name!r} is closed"))
            self._ready.exception()
            return
        if self.connection.state == "connected":
            self._start_subscribe()

    def _on_connection_state(self, change: dict[str, Any]) -> None:
        on_runtime(self._apply_connection_state, change["new"])

    def _apply_connection_state(self, state: str) -> None:
        if self._closed:
            return
        if state == "connected" and not self._handle_alive():
            # First connect, or the client dropped the channel (disconnect() then connect()).
            self._start_subscribe()
        self._sync_status()

    def _handle_alive(self) -> bool:
        handle = self._handle
        return handle is not None and handle.active

    def _sync_status(self, _event: Any = None) -> None:
        handle = self._handle
        subscribed = (
            handle is not None
            and self._handle_alive()
            and _value(handle.status) == "subscribed"
            and self.connection.client.state == "connected"
        )
        self._set(is_subscribed=bool(subscribed))

    def _start_subscribe(self) -> None:
        if self._ready is None or self._subscribing:
            return
        if self._ready.done() and self._ready.exception() is not None:
            return  # refused for good (e.g. forbidden): reported in ``error``
        self._subscribing = True
        self._tasks.spawn(self._subscribe())

    async def _subscribe(self) -> None:
        try:
            handle = await self.connection.client.subscribe(
                self.name,
                presence=self.presence,
                presence_data=self.presence_data if self.presence else None,
                history=self.history,
                state=self.want_state,
                on_message=self._on_frame,
                on_presence=self._on_presence_event,
                on_reset=self._on_reset,
            )
        except asyncio.CancelledError:
            self._subscribing = False
            raise
        except Exception as exc:
            self._subscribing = False
            self._set(error=f"subscribe refused: {exc}")
            if isinstance(exc, ServerError) and self._ready is not None and not self._ready.done():
                # Refused by the gateway (e.g. forbidden): final. Anything else (connection lost,
                # ack timeout) is retried on the next connect.
                self._ready.set_exception(exc)
                self._ready.exception()  # retrieved: waiters re-raise it, nothing logs "never retrieved"
            return
        self._subscribing = False
        if self._closed:
            await _quietly(handle.unsubscribe())
            return
        if handle is not self._handle:
            for unsub in self._handle_unsubs:
                unsub()
            self._handle_unsubs = [handle.on_event(self._sync_status)]
        self._handle = handle
        self._set(
            error="",
            members=list(handle.members),
            users=list(handle.users),
        )
        self._sync_status()
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(handle)
        elif self._ready is not None and self._ready.done():
            # Re-subscribed after a disconnect(): operations use the new handle.
            self._ready = self._loop.create_future()
            self._ready.set_result(handle)

    async def _ready_handle(self) -> Any:
        if self._closed:
            raise ChannelClosedError(f"channel {self.name!r} is closed")
        assert self._ready is not None, "setup runs before any operation (FIFO hand-off)"
        return await asyncio.shield(self._ready)

    async def _publish(self, data: Any, *, key: str | None, ephemeral: bool) -> Any:
        handle = await self._ready_handle()
        try:
            return await handle.publish(data, key=key, ephemeral=ephemeral)
        except Exception as exc:
            self._set(error=f"publish failed: {exc}")
            raise

    async def _update_presence(self, data: dict[str, Any]) -> Any:
        handle = await self._ready_handle()
        return await handle.update_presence(data)

    def _on_frame(self, frame: Any) -> None:
        if self._closed or not isinstance(frame, dict):
            return
        self._set(received=self.received + 1)
        if self._orderer is None:
            self._deliver(frame)
            return
        message = message_to_order(frame, self.ordering)
        if message is None:
            self._deliver(frame)  # no sequence to order by (see message_to_order): as it comes
        else:
            for ready in self._orderer.on_message(message, self._clock()):
                self._deliver(ready)
        self._after_order_change()

    def _tick_orderer(self, when: float) -> None:
        if self._orderer is None or self._closed:
            return
        for ready in self._orderer.tick(self._clock(when)):
            self._deliver(ready)  # the gap before them was given up on (counted in gaps_skipped)
        self._after_order_change()

    def _after_order_change(self) -> None:
        assert self._orderer is not None and self._order_timer is not None
        self._set(ordering_stats=dataclasses.asdict(self._orderer.stats()))
        self._order_timer.schedule(self._orderer.next_deadline())

    def _deliver(self, frame: dict[str, Any]) -> None:
        for listener in list(self._listeners["message"]):
            _call(listener, frame)
        if self._buffer is None:
            self._append([frame])
            return
        self._buffer.push(frame, self._clock())
        self._after_buffer_change()

    def _poll_buffer(self, when: float) -> None:
        if self._buffer is None or self._closed:
            return
        batch = self._buffer.poll(self._clock(when))
        if batch:
            self._append(batch)
        self._after_buffer_change()

    def _after_buffer_change(self) -> None:
        assert self._buffer is not None and self._buffer_timer is not None
        stats = self._buffer.stats()
        self._set(
            pressure=stats.pressure,
            buffer_stats={
                "buffered": stats.buffer_size,
                "pushed": stats.pushed,
                "delivered": stats.delivered,
                "merged": stats.merged,
                "dropped": stats.dropped,
                "fill_ratio": round(stats.fill_ratio, 3),
            },
        )
        self._buffer_timer.schedule(self._buffer.next_deadline())

    def _append(self, frames: list[dict[str, Any]]) -> None:
        keep = self.max_messages
        merged = (self.messages + frames)[-keep:]
        self._set(messages=merged)

    def _on_presence_event(self, event: Any) -> None:
        if self._closed:
            return
        handle = self._handle
        if handle is not None:
            self._set(members=list(handle.members), users=list(handle.users))
        for listener in list(self._listeners["presence"]):
            _call(listener, event)

    def _on_reset(self, snapshot: Any) -> None:
        # Continuity was lost beyond the gateway's history: the client replaced its buffer.
        handle = self._handle
        if handle is not None and self._buffer is None:
            self._set(messages=list(handle.messages)[-self.max_messages :])
        for listener in list(self._listeners["reset"]):
            _call(listener, snapshot)

    async def _shutdown(self) -> None:
        self._tasks.cancel_all()
        if self._buffer_timer is not None:
            self._buffer_timer.cancel()
        if self._order_timer is not None:
            self._order_timer.cancel()
        for unsub in self._handle_unsubs:
            unsub()
        self._handle_unsubs.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ChannelClosedError(f"channel {self.name!r} is closed"))
            self._ready.exception()
        handle, self._handle = self._handle, None
        if handle is not None and self.connection.state == "connected":
            await _quietly(handle.unsubscribe())
        self._set(is_subscribed=False)

    def _set(self, **updates: Any) -> None:
        with self.hold_trait_notifications():
            for name, value in updates.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)


def _value(state: Any) -> str:
    return str(getattr(state, "value", state))


def _call(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("channel listener %r failed", fn)


async def _quietly(awaitable: Any) -> None:
    # Unsubscribing from a dead socket: the gateway forgets the subscription on close anyway.
    with contextlib.suppress(Exception):
        await awaitable
