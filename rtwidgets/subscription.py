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
from typing import TYPE_CHECKING, Any

# ChannelHandle is defined there and re-exported here.
from rtwidgets.channel_handle import ChannelHandle
from rtwidgets.client_errors import (
    ConnectionClosedError,
    RealtimeError,
    ServerError,
    _call,
    _error_from_failed,
    _settle,
)
from rtwidgets.core.channel import (
    ChannelCore,
    ChannelEvent,
    ChannelState,
    EpochChanged,
    SyncReceived,
)
from rtwidgets.core.connection import ConnectionState, Operation, SendFailed
from rtwidgets.core.subscribers import Subscriber, SubscriberSet

if TYPE_CHECKING:
    from rtwidgets.client import RealtimeConnection

__all__ = ["ChannelHandle", "ChannelSubscription"]

log = logging.getLogger("rtwidgets.client")

_RESYNC_ATTEMPTS = 10  # sync retries (0.1 s doubling to 2 s) after an epoch change


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
