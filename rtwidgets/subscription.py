"""A channel's gateway subscription on a :class:`~rtwidgets.client.RealtimeConnection`, and the
handles of the subscribers that share it.

Rules of this module:

* One :class:`ChannelSubscription` per channel and connection: it owns the channel's
  :class:`~rtwidgets.core.channel.ChannelCore` (resume position, exactly-once delivery, presence)
  and its gateway ``subscribe``/``unsubscribe``. Every ``conn.subscribe()`` returns a **new**
  :class:`ChannelHandle` on it; what each handle sees (its own history and keyed state, every
  message from its start, the presence union) is decided by the sans-I/O
  :class:`~rtwidgets.core.subscribers.SubscriberSet`; this module only sends what it asks for and
  moves events to callbacks.
* The gateway subscription lives while any handle does: :meth:`ChannelHandle.unsubscribe` of the
  last handle unsubscribes; of another one, it only re-applies the presence union.
* Everything runs on the connection's event loop; callbacks too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rtwidgets.client_errors import (
    ConnectionClosedError,
    RealtimeError,
    ServerError,
    Unsubscribe,
    _call,
    _error_from_failed,
    _register,
    _settle,
)
from rtwidgets.core.channel import (
    ChannelCore,
    ChannelEvent,
    ChannelMessage,
    ChannelOptions,
    ChannelState,
    EpochChanged,
    Reset,
    SyncReceived,
)
from rtwidgets.core.connection import ConnectionState, Operation, SendFailed
from rtwidgets.core.presence import MemberJoined, MemberLeft, MemberUpdated, PresenceSynced
from rtwidgets.core.subscribers import Subscriber, SubscriberPhase, SubscriberSet

if TYPE_CHECKING:
    from rtwidgets.client import RealtimeConnection

__all__ = ["ChannelHandle", "ChannelSubscription"]

log = logging.getLogger("rtwidgets.client")

_RESYNC_ATTEMPTS = 10  # sync retries (0.1 s doubling to 2 s) after an epoch change


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


class ChannelSubscription:
    """The connection's one gateway subscription to a channel, shared by its handles."""

    def __init__(self, conn: RealtimeConnection, core: ChannelCore) -> None:
        self._conn = conn
        self.core = core
        self.name = core.name
        self.subscribers = SubscriberSet(core.name)
        self.handles: dict[Subscriber, ChannelHandle] = {}
        self._sub_op: Operation | None = None
        self._subscribed: asyncio.Future[None] | None = None
        self._ever_subscribed = False
        self._leaving = False  # the last handle left: unsubscribing
        self._closing = False  # no longer accepting acks/resubscribes
        self.gone: asyncio.Future[None] = conn._loop_future()  # set once dropped
        self._last_sync: dict[str, Any] | None = None
        # (presence, data) the gateway was last asked for: a change of the union is sent once.
        self._presence_asked: tuple[bool, dict[str, Any] | None] = (False, None)

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> ChannelState:
        return self.core.state

    @property
    def current(self) -> bool:
        return not self._closing and self._conn._subscriptions.get(self.name) is self

    @property
    def members(self) -> list[dict[str, Any]]:
        return self.core.presence.members()

    @property
    def users(self) -> list[str]:
        return self.core.presence.users()

    @property
    def last_event_id(self) -> str | None:
        return self.core.last_event_id

    @property
    def epoch(self) -> str | None:
        return self.core.epoch

    @property
    def offset(self) -> int | None:
        return self.core.last_offset

    @property
    def presence_data(self) -> dict[str, Any] | None:
        return self.core.presence_data

    def stats(self) -> dict[str, Any]:
        c = self.core
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
            "subscribers": len(self.subscribers),
        }

    def __repr__(self) -> str:
        return f"<ChannelSubscription {self.name!r} {self.status.value} handles={len(self.handles)}>"

    # ------------------------------------------------------------------ handles

    def add_handle(
        self,
        *,
        history: int,
        state: bool,
        presence: bool,
        presence_data: dict[str, Any] | None,
        max_messages: int,
    ) -> ChannelHandle:
        """A new subscriber; sends what it needs (its catch-up, a presence change) when it can.

        Raises:
            ValueError: its presence data conflicts with another handle's (see ``SubscriberSet.add``).
        """
        subscriber = self.subscribers.add(
            history=history, state=state, presence=presence, presence_data=presence_data
        )
        handle = ChannelHandle(self, subscriber, max_messages)
        self.handles[subscriber] = handle
        self._apply_presence_union()
        if self._sub_op is None and self.status is ChannelState.SUBSCRIBED:
            self._send_pending()
        handle._notify()
        return handle

    async def release(self, handle: ChannelHandle) -> None:
        """``handle`` left: unsubscribe when it was the last, else re-apply the presence union."""
        self.handles.pop(handle._subscriber, None)
        if self.handles:
            self._apply_presence_union()
            if self._sub_op is None and self.status is ChannelState.SUBSCRIBED:
                self._send_pending()
            return
        await self._unsubscribe()

    def _apply_presence_union(self) -> None:
        self.core.set_presence(self.subscribers.presence, self.subscribers.presence_data)

    async def _unsubscribe(self) -> None:
        conn = self._conn
        if self._leaving or self._closing or not self.current:
            return
        self._leaving = True
        if self._subscribed is not None and not self._subscribed.done():
            # Let an in-flight subscribe finish first so its ack cannot land after we left.
            await asyncio.wait([self._subscribed], timeout=conn.ack_timeout)
        self._closing = True
        if self.status is ChannelState.SUBSCRIBED and conn.state is ConnectionState.CONNECTED:
            frame, events = self.core.unsubscribe_frame()
            self.dispatch(events)
            try:
                await conn._request(frame, ack=True)
            except (ServerError, ConnectionClosedError) as exc:
                # not_subscribed / closed: either way the gateway no longer has us on it.
                log.debug("unsubscribe of %r ended with %s", self.name, exc)
        conn._drop_channel(self)

    # ------------------------------------------------------------------ sending

    def send_subscribe(self, *, priority: bool) -> None:
        """(Re)subscribe. A first subscribe (not a resume) also carries the catch-up of the oldest
        waiting handle, whose ``history`` frame then goes to that handle alone."""
        conn = self._conn
        frame, events = self.core.subscribe_frame()
        self.dispatch(events)
        waiting = self.subscribers.waiting()
        catching: Subscriber | None = None
        if waiting and not self.core.resuming:
            catching = waiting[0]
            frame["options"].update(self.subscribers.catch_up_options(catching))
        op = conn._core.send(frame, now=conn._now(), ack=True, priority=priority)
        self._presence_asked = (self.subscribers.presence, self.subscribers.presence_data)
        if catching is not None:
            self.subscribers.start_catch_up(catching, op)
        self._sub_op = op
        conn._op_channel[op.op_id] = ("subscribe", self)
        if self._subscribed is None or self._subscribed.done():
            self._subscribed = conn._loop_future()
        conn._pump()

    def _send_pending(self) -> None:
        """Once subscribed: send waiting catch-ups, then any presence change still to apply."""
        conn = self._conn
        if conn.state is not ConnectionState.CONNECTED or self._closing:
            return
        for subscriber in self.subscribers.waiting():
            options = self.subscribers.catch_up_options(subscriber)
            frame = {"type": "subscribe", "channel": self.name, "options": options}
            op = conn._core.send(frame, now=conn._now(), ack=True)
            self._presence_asked = (self.subscribers.presence, self.subscribers.presence_data)
            self.subscribers.start_catch_up(subscriber, op)
            conn._op_channel[op.op_id] = ("catch_up", self)
        wanted = (self.subscribers.presence, self.subscribers.presence_data)
        if wanted != self._presence_asked:
            asked_presence = self._presence_asked[0]
            self._presence_asked = wanted
            if wanted[0] and asked_presence:
                frame = self.core.presence_update_frame(wanted[1] or {})
            else:
                # Joining or leaving presence on a live subscription is a re-subscribe.
                frame = {
                    "type": "subscribe",
                    "channel": self.name,
                    "options": self.subscribers.presence_options(),
                }
            op = conn._core.send(frame, now=conn._now(), ack=True)
            conn._op_channel[op.op_id] = ("presence", self)
        conn._pump()

    async def send_presence_update(self, merged: dict[str, Any]) -> dict[str, Any] | None:
        self.core.set_presence(True, merged)
        self._presence_asked = (True, merged)
        frame = self.core.presence_update_frame(merged)
        return await self._conn._request(frame, ack=True, retry=True)  # type: ignore[no-any-return]

    async def sync(self, frame: dict[str, Any] | None = None) -> dict[str, Any]:
        self._last_sync = None
        await self._conn._request(dict(frame) if frame is not None else self.core.sync_frame(), ack=True)
        if self._last_sync is None:
            raise ServerError("internal", "the gateway acked sync without a sync_response")
        return self._last_sync

    # ------------------------------------------------------------------ inputs (from the connection)

    def on_frame(self, frame: dict[str, Any]) -> None:
        """A server frame for this channel."""
        if frame.get("type") == "history" and "requestId" in frame:
            rid = frame["requestId"]
            subscriber = self.subscribers.catching_up(lambda op: getattr(op, "wire_id", None) == rid)
            if subscriber is not None:
                self._deliver_catch_up(subscriber, frame)
                return
            if not self.core.awaiting_history:
                return  # the catch-up of a handle that has left meanwhile: nobody's stream
        self.dispatch(self.core.on_frame(frame))

    def on_ack(self, kind: str, op: Operation, frame: dict[str, Any]) -> None:
        if kind == "subscribe":
            if self._sub_op is op:
                self._sub_op = None
            if not self._closing and self.current:
                self._ever_subscribed = True
                self.dispatch(self.core.on_subscribe_ack(frame))
                _settle(self._subscribed, None)
                self._send_pending()
        elif kind == "catch_up":
            subscriber = self.subscribers.catching_up(lambda req: req is op)
            if subscriber is not None:
                # Acked without its history frame (cannot happen with this gateway): live, empty.
                log.warning("catch-up of %r acked without a history frame", self.name)
                self._deliver_catch_up(subscriber, {})

    def _deliver_catch_up(self, subscriber: Subscriber, frame: dict[str, Any]) -> None:
        handle = self.handles.get(subscriber)
        events = self.subscribers.on_catch_up(subscriber, frame)
        if handle is not None:
            for ev in events:
                handle._deliver(ev)
            handle._notify()

    def on_send_failed(self, kind: str, ev: SendFailed) -> None:
        conn = self._conn
        if kind == "subscribe" and self._sub_op is ev.op:
            self._sub_op = None
        catching = self.subscribers.catching_up(lambda req: req is ev.op)
        if ev.code == "connection_closed":
            # The socket dropped mid-request: the channel is resubscribed (and catch-ups re-sent)
            # when the next socket opens; a subscribe() still waiting is failed by the state
            # change if the connection ended for good.
            if catching is not None:
                self.subscribers.catch_up_lost(catching)
            return
        error = _error_from_failed(ev)
        if kind in ("catch_up", "presence"):
            # Refused for this handle only (e.g. unavailable); the subscription stays.
            handle = self.handles.get(catching) if catching is not None else None
            if handle is not None:
                _call(handle._on_error, error)
                handle._close(error)
                conn._spawn(self.release(handle))
            else:
                conn._report(error)
            return
        if not self._closing:
            self.dispatch(self.core.on_subscribe_failed())
            for handle in list(self.handles.values()):
                _call(handle._on_error, error)
            if not (self._subscribed is None or self._subscribed.done()):
                self._subscribed.set_exception(error)
                self._subscribed.exception()
            else:
                conn._report(error)  # a resubscribe was refused: nobody is awaiting it
            for handle in list(self.handles.values()):
                handle._close(error)
            conn._drop_channel(self)

    def dropped(self) -> None:
        """The subscription is gone (unsubscribed, refused, or the connection closed)."""
        self._closing = True
        conn = self._conn
        if self._sub_op is not None:
            conn._core.cancel(self._sub_op)
            conn._op_channel.pop(self._sub_op.op_id, None)
            self._sub_op = None
        self.dispatch(self.core.on_unsubscribed())
        error = ConnectionClosedError(f"channel {self.name!r} was closed")
        for handle in list(self.handles.values()):
            handle._close(error)
        self.handles.clear()
        _settle(self._subscribed, exc=error)
        if self._subscribed is not None and self._subscribed.done() and not self._subscribed.cancelled():
            self._subscribed.exception()  # mark retrieved: nobody may be awaiting it
        _settle(self.gone, None)

    def dispatch(self, events: list[ChannelEvent]) -> None:
        """Hand the shared core's events to the connection's listeners and to each handle."""
        if not events:
            return
        conn = self._conn
        for ev in events:
            _call(conn._on_event, ev)
            if isinstance(ev, SyncReceived):
                self._last_sync = ev.frame
            elif isinstance(ev, EpochChanged):
                # The channel's history was replaced under us: fetch the new epoch's snapshot.
                conn._spawn(self._resync(ev))
        for subscriber, ev in self.subscribers.route(events):
            handle = self.handles.get(subscriber)
            if handle is not None:
                handle._deliver(ev)
        for handle in list(self.handles.values()):
            handle._notify()

    async def _resync(self, ev: EpochChanged) -> None:
        log.warning("channel %r moved to a new epoch (history lost); re-syncing", self.name)
        delay = 0.1
        for attempt in range(_RESYNC_ATTEMPTS):
            if not self.core.resyncing:
                return  # overtaken (reconnect + resubscribe, unsubscribe): nothing left to do
            try:
                await self.sync()
                return
            except RealtimeError as exc:
                # 'unavailable': the broker (e.g. a Redis that just restarted) is coming back.
                if exc.code != "unavailable" or attempt == _RESYNC_ATTEMPTS - 1:
                    # Deliver what was held rather than hold it forever; the error tells the
                    # application that continuity is not guaranteed.
                    self.dispatch(self.core.on_resync_failed())
                    for handle in list(self.handles.values()):
                        _call(handle._on_error, exc)
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
