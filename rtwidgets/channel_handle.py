"""One subscriber's view of a channel: :class:`ChannelHandle`, what ``conn.subscribe()`` returns.

Rules of this module:

* A handle only holds what is its own (its message deque, its callbacks, its waiters, its
  :class:`~rtwidgets.core.subscribers.Subscriber` record); everything shared (the channel's core,
  presence, the gateway subscription) is read through its
  :class:`~rtwidgets.subscription.ChannelSubscription`, which also calls :meth:`ChannelHandle._deliver`
  and :meth:`ChannelHandle._notify`. Re-exported from :mod:`rtwidgets.subscription` and
  :mod:`rtwidgets.client`.
* Everything runs on the connection's event loop; callbacks too. A callback that raises is logged
  and never breaks the channel.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rtwidgets.client_errors import (
    ConnectionClosedError,
    RealtimeError,
    Unsubscribe,
    _call,
    _register,
    _settle,
)
from rtwidgets.core.channel import ChannelEvent, ChannelMessage, ChannelOptions, ChannelState, Reset
from rtwidgets.core.presence import MemberJoined, MemberLeft, MemberUpdated, PresenceSynced
from rtwidgets.core.subscribers import Subscriber, SubscriberPhase

if TYPE_CHECKING:  # pragma: no cover - the subscription imports this module
    from rtwidgets.subscription import ChannelSubscription

__all__ = ["ChannelHandle"]


class ChannelHandle:
    """One subscriber's view of a channel (create with ``conn.subscribe``).

    Several handles on one channel of one connection are independent: each got the history and
    keyed state it asked for, sees every message from its start, and unsubscribing one leaves the
    others as they were. Attributes: ``messages`` (bounded deque, newest last, this handle's),
    ``members`` / ``users`` (the channel's presence), ``last_event_id``, ``epoch``, ``offset``
    (the connection's position on the channel), ``state`` (this handle's keyed state: key ->
    latest frame, with ``state=True``), ``status`` (:class:`ChannelState`).
    """

    def __init__(self, sub: ChannelSubscription, subscriber: Subscriber, max_messages: int) -> None:
        self._sub = sub
        self._subscriber = subscriber
        self.name = sub.name
        self.messages: deque[dict[str, Any]] = deque(maxlen=max_messages)
        self._on_message: list[Callable[[dict[str, Any]], Any]] = []
        self._on_presence: list[Callable[[Any], Any]] = []
        self._on_reset: list[Callable[[Reset], Any]] = []
        self._on_event: list[Callable[[ChannelEvent], Any]] = []
        self._on_error: list[Callable[[RealtimeError], Any]] = []
        self._ready: asyncio.Future[None] = sub._conn._loop_future()
        self._closed = False
        self._waiters: list[tuple[Callable[[ChannelHandle], bool], asyncio.Future[None]]] = []

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> ChannelState:
        if self._closed:
            return ChannelState.UNSUBSCRIBED
        status = self._sub.status
        if status is ChannelState.SUBSCRIBED and self._subscriber.phase is not SubscriberPhase.LIVE:
            return ChannelState.SUBSCRIBING  # its own catch-up is still on the way
        return status

    @property
    def active(self) -> bool:
        """True while this handle is open and its subscription is the connection's current one."""
        return not self._closed and self._sub.current

    @property
    def options(self) -> ChannelOptions:
        s = self._subscriber
        return ChannelOptions(
            presence=s.presence, presence_data=s.presence_data, history=s.history, state=s.state
        )

    @property
    def members(self) -> list[dict[str, Any]]:
        return self._sub.members

    @property
    def users(self) -> list[str]:
        return self._sub.users

    @property
    def last_event_id(self) -> str | None:
        return self._sub.last_event_id

    @property
    def epoch(self) -> str | None:
        return self._sub.epoch

    @property
    def offset(self) -> int | None:
        return self._sub.offset

    @property
    def state(self) -> dict[str, Any] | None:
        """This handle's keyed state (key -> latest message frame) when subscribed with ``state=True``."""
        return self._subscriber.keyed_state

    @property
    def presence_data(self) -> dict[str, Any] | None:
        """The connection's presence data on the channel (every handle's data merged)."""
        return self._sub.presence_data

    def stats(self) -> dict[str, Any]:
        return self._sub.stats()

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
        """Wait until ``predicate(self)`` holds (re-checked after every channel event).

        Raises:
            TimeoutError: not within ``timeout`` seconds.
        """
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

        Raises:
            ConnectionClosedError: this handle is unsubscribed.
            ValueError: ``ephemeral`` together with ``key``.
        """
        if self.status in (ChannelState.UNSUBSCRIBED, ChannelState.UNSUBSCRIBING):
            raise ConnectionClosedError(f"channel {self.name!r} is not subscribed")
        if ephemeral and key is not None:
            raise ValueError("an ephemeral message cannot carry a key (it is not stored)")
        if not ephemeral and msg_id is None:
            msg_id = uuid.uuid4().hex
        frame = self._sub.core.publish_frame(data, key=key, ephemeral=ephemeral, msg_id=msg_id)
        return await self._sub._conn._request(frame, ack=ack, retry=ack and not ephemeral)  # type: ignore[no-any-return]

    async def update_presence(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Replace this handle's presence data (needs ``presence=True``); the connection's member
        shows every handle's data merged, this one's keys winning. Kept across reconnects.

        Raises:
            ValueError: ``data`` is not a dict, or this handle was subscribed without presence.
        """
        merged = self._sub.subscribers.update_presence(self._subscriber, data)
        return await self._sub.send_presence_update(merged)

    async def sync(self, frame: dict[str, Any] | None = None) -> dict[str, Any]:
        """Ask the gateway for everything after ``last_event_id``; returns the ``sync_response``.

        A delta is delivered through ``on_message`` of every handle (deduplicated); a snapshot
        calls ``on_reset``. ``frame``: a ``sync`` frame of one's own for this channel (e.g. a
        reconciler's, with its ``lastEventId`` and ``pendingOps``) instead of the connection's.

        Raises:
            ValueError: ``frame`` is not a ``sync`` frame for this channel.
        """
        if frame is not None and (frame.get("type") != "sync" or frame.get("channel") != self.name):
            raise ValueError(f"expected a 'sync' frame for channel {self.name!r}")
        return await self._sub.sync(frame)

    async def unsubscribe(self) -> None:
        """Leave the channel (idempotent). The gateway subscription (and presence) ends with the
        last handle of this connection on the channel; the other handles are not affected."""
        if self._closed:
            return
        self._close(ConnectionClosedError(f"channel {self.name!r} was unsubscribed"))
        await self._sub.release(self)

    # ------------------------------------------------------------------ internals

    def _close(self, error: RealtimeError) -> None:
        self._closed = True
        self._sub.subscribers.remove(self._subscriber)
        _settle(self._ready, exc=error)
        if self._ready.done() and not self._ready.cancelled():
            self._ready.exception()  # retrieved: nobody may be awaiting it

    def _deliver(self, ev: ChannelEvent) -> None:
        _call(self._on_event, ev)
        if isinstance(ev, ChannelMessage):
            self.messages.append(ev.frame)
            _call(self._on_message, ev.frame)
        elif isinstance(ev, Reset):
            self.messages.clear()
            self.messages.extend(ev.events)
            _call(self._on_reset, ev)
        elif isinstance(ev, MemberJoined | MemberLeft | MemberUpdated | PresenceSynced):
            _call(self._on_presence, ev)

    def _notify(self) -> None:
        if self._sub.status is ChannelState.SUBSCRIBED and self._subscriber.phase is SubscriberPhase.LIVE:
            _settle(self._ready, None)
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
