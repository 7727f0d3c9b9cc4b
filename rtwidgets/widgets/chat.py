"""``Chat``: a message feed with optimistic sends and typing indicators over a Channel.

Rules of this module:

* Every message, sent or received, is an item of an
  :class:`~rtwidgets.core.optimistic.OptimisticStore` (the optimistic core): a send is shown at
  once as pending, confirmed by the gateway's ack or by its echo, and marked failed (kept in the
  feed, not removed) when it is refused or not acknowledged within ``ack_timeout`` seconds. An
  echo that comes after a timeout still confirms it.
* A send is published unkeyed (a chat message is not keyed state) as the store's op data
  ``{"type": "create", "item": {"id": localId, "text", "user", "ts"}, "opId", "createdAt"}``.
  Any other data on the channel (e.g. ``{"text": ...}`` from a script) is shown as a message of
  its sender, never dropped.
* Memory is bounded: the feed keeps the newest ``MAX_MESSAGES``; older messages are forgotten
  by the store and by every table here. Ids never repeat: own messages keep their local id,
  others get the gateway's event id (prefixed by the epoch once the gateway's history restarted),
  a collision or a frame without id gets a fresh suffix from a counter that never goes back.
* Typing travels in presence data (``{"typing": bool}``), so a PresenceBar on the same channel
  shows it too. Feed state lives on the runtime thread only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from traitlets import List, Unicode

from rtwidgets.core.optimistic import Confirmed, Created, OptimisticStore, RolledBack, StoreError
from rtwidgets.core.presence import group_by_user
from rtwidgets.models._binding import DeadlineTimer, LoopClock, TaskGroup
from rtwidgets.models.channel import Channel
from rtwidgets.models.connection import Connection
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets._base import IntentError, RealtimeWidget, color_for, require_str

__all__ = ["MAX_MESSAGES", "MAX_TEXT", "Chat"]

log = logging.getLogger("rtwidgets.widgets")

MAX_MESSAGES = 200
MAX_TEXT = 4000


def _text_of(data: Any) -> str:
    text = data.get("text") if isinstance(data, Mapping) else None
    if isinstance(text, str):
        return text
    # Not a chat message (another publisher on the channel): show it, never drop it silently.
    return orjson.dumps(data, default=str).decode()


def _own_item(data: Any) -> Mapping[str, Any] | None:
    """The item of a chat send's data (``{"type": "create", "item": {...}}``), else None."""
    if not isinstance(data, Mapping) or data.get("type") != "create":
        return None
    item = data.get("item")
    if isinstance(item, Mapping) and isinstance(item.get("id"), str) and isinstance(item.get("text"), str):
        return item
    return None


class Chat(RealtimeWidget):
    """A chat on ``channel_or_connection``: a :class:`Channel`, or a :class:`Connection` plus
    ``name`` (then the widget owns a presence channel with 50 messages of history and
    closes it with itself). ``user_colors`` maps user ids to CSS colours.

    Args:
        channel_or_connection: the :class:`Channel` to chat on, or a :class:`Connection`.
        name: the channel name; needed with a :class:`Connection`, and with a :class:`Channel`
            it must be that channel's name (or ``None``).
        user_colors: user id -> CSS colour for the names in the feed.
        ack_timeout: seconds (> 0) a sent message may wait for its ack before it is shown as
            failed.
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        ValueError: no ``name`` with a :class:`Connection`, a ``name`` different from the
            channel's, or ``ack_timeout`` not > 0.
        TypeError: ``channel_or_connection`` is neither a :class:`Channel` nor a
            :class:`Connection`.
        ProtocolError: ``name`` is not a valid channel name.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

    _bundle = "chat"

    channel = Unicode("").tag(sync=True)
    me = Unicode("").tag(sync=True)
    state = Unicode("disconnected").tag(sync=True)
    messages: List[dict[str, Any]] = List().tag(sync=True)
    typing: List[str] = List().tag(sync=True)  # user ids
    placeholder = Unicode("Type a message").tag(sync=True)

    def __init__(
        self,
        channel_or_connection: Channel | Connection,
        name: str | None = None,
        user_colors: dict[str, str] | None = None,
        *,
        ack_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(channel_or_connection, Connection):
            if not name:
                raise ValueError("Chat(connection, name): a channel name is needed with a Connection")
            channel = Channel(channel_or_connection, name, presence=True, history=50)
            owned = True
        elif isinstance(channel_or_connection, Channel):
            if name is not None and name != channel_or_connection.name:
                raise ValueError(f"name {name!r} differs from the channel's {channel_or_connection.name!r}")
            channel, owned = channel_or_connection, False
        else:
            raise TypeError(
                f"Chat needs a Channel or a Connection, got {type(channel_or_connection).__name__}"
            )
        self.model = channel
        self.connection = channel.connection
        self._colors = dict(user_colors or {})
        # Runtime thread only, from here on. Every table is bounded by the feed (MAX_MESSAGES)
        # or by the sends in flight.
        self._store = OptimisticStore(channel.name, ack_timeout=ack_timeout)
        self._mine: set[str] = set()  # local ids of this widget's sends still in the feed
        self._outgoing: dict[str, dict[str, Any]] = {}  # op id -> item, while the op is pending
        self._failed: dict[str, dict[str, Any]] = {}  # local id -> item of a refused/timed-out send
        self._serial = itertools.count(1)  # suffixes for ids that would repeat; never goes back
        self._first_epoch: str | None = None
        loop = get_runtime().loop
        self._clock = LoopClock(loop)
        self._tasks = TaskGroup(f"chat {channel.name!r}")
        self._timer = DeadlineTimer(loop, self._on_tick)
        super().__init__(
            channel=channel.name,
            me=self.connection.user_id,
            state=self.connection.state,
            **kwargs,
        )
        if owned:
            self._on_close(channel.close)
        self._on_close(self._tasks.cancel_all)
        self._on_close(lambda: self._run(self._timer.cancel))
        self._observe(self.connection, self._on_connection, ["state", "user_id"])
        self._observe(channel, self._on_members, ["members"])
        self._sync.refresh(lambda: {"state": self.connection.state, "me": self.connection.user_id})
        self._run(self._seed)

    # ------------------------------------------------------------------ Python API

    def post(self, text: str, local_id: str | None = None) -> str:
        """Send ``text`` (shown at once as pending); returns the local id of the entry.

        Args:
            text: the message, not blank, at most ``MAX_TEXT`` characters.
            local_id: the entry's id (default: a fresh ``py-<uuid>``). Sending the same id
                twice sends once; an id another entry already has is replaced by a fresh one
                (logged), which the returned id does not reflect.

        Raises:
            ValueError: ``text`` is empty or longer than ``MAX_TEXT`` characters.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("Chat.post needs a non-empty text")
        if len(text) > MAX_TEXT:
            raise ValueError(f"message longer than {MAX_TEXT} characters")
        local_id = local_id or f"py-{uuid.uuid4().hex}"
        self._run(self._post, text, local_id)
        return local_id

    @property
    def feed(self) -> list[dict[str, Any]]:
        """The current entries (what the browser shows, before coalescing)."""
        return self._entries()

    def __repr__(self) -> str:
        return f"<Chat channel={self.channel!r} messages={len(self.messages)}>"

    # ------------------------------------------------------------------ intents

    def _intent_send(self, content: dict[str, Any]) -> None:
        text = require_str(content, "text", max_len=MAX_TEXT)
        local_id = require_str(content, "localId", max_len=128)
        self._run(self._post, text, local_id)

    def _intent_typing(self, content: dict[str, Any]) -> None:
        typing = content.get("typing")
        if not isinstance(typing, bool):
            raise IntentError("intent 'typing' needs a boolean 'typing'")
        if not self.model.presence:
            raise IntentError(f"channel {self.model.name!r} has no presence: typing cannot be shared")
        self.model.update_presence({**self.model.presence_data, "typing": typing}, wait=False)

    # ------------------------------------------------------------------ runtime thread

    def _seed(self) -> None:
        if self.closed:
            return
        for frame in self.model.messages:
            self._add_frame(frame)
        self._on_close(self.model.on_message(self._on_frame))
        self._changed()
        self._on_members(None)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self._add_frame(frame)
            self._changed()

    def _add_frame(self, frame: Mapping[str, Any]) -> None:
        """Feed one channel message to the store: our echo as itself, anything else as an item."""
        data = frame.get("data")
        sender = str(frame.get("senderId") or "?")
        item = _own_item(data)
        # Our local ids are random per send, so sender + local id identifies our own echo (also
        # after a reconnect, when our clientId changed).
        mine = item is not None and sender == self.connection.client.user_id and item["id"] in self._mine
        created_at = data.get("createdAt") if isinstance(data, Mapping) else None
        if not (isinstance(created_at, (int, float)) and not isinstance(created_at, bool)):
            stamp = frame.get("timestamp")
            created_at = float(stamp) / 1000.0 if isinstance(stamp, (int, float)) else time.time()
        key = str(item["id"]) if mine and item is not None else self._fresh_id(frame)
        text = str(item["text"]) if item is not None else _text_of(data)
        message: dict[str, Any] = {
            "type": "message",
            "channel": self.model.name,
            "key": key,
            # The sender is the gateway's (from the token), never what the data claims.
            "data": {
                "type": "create",
                "item": {"id": key, "user": sender, "text": text, "ts": float(created_at) * 1000.0},
                "createdAt": float(created_at),
            },
        }
        if mine and isinstance(data, Mapping) and isinstance(data.get("opId"), str):
            message["data"]["opId"] = data["opId"]
        for field in ("offset", "epoch"):
            if frame.get(field) is not None:
                message[field] = frame[field]
        try:
            self._store.on_message(message)
        except StoreError as exc:  # e.g. an offset that is not an integer: say so, keep going
            log.warning("Chat %r: a message could not be shown: %s", self.model.name, exc)

    def _fresh_id(self, frame: Mapping[str, Any]) -> str:
        """A display id for someone else's message that no entry of this feed has had."""
        event_id = str(frame.get("id") or frame.get("eventId") or "")
        epoch = frame.get("epoch")
        if isinstance(epoch, str) and epoch:
            if self._first_epoch is None:
                self._first_epoch = epoch
            elif epoch != self._first_epoch and event_id:
                event_id = f"{epoch}:{event_id}"  # the gateway's offsets restarted
        if not event_id:
            return f"anon-{next(self._serial)}"
        if self._store.get(event_id) is not None or event_id in self._failed or event_id in self._mine:
            return f"{event_id}~{next(self._serial)}"
        return event_id

    def _post(self, text: str, local_id: str) -> None:
        if self.closed:
            return
        if local_id in self._mine:
            return  # the same intent twice (a re-sent comm message): already shown and sent
        if self._store.get(local_id) is not None:
            # Another entry (someone else's message) has this id: a new id keeps both.
            log.warning(
                "Chat %r: local id %r is taken; the message is sent under a new one",
                self.model.name,
                local_id,
            )
            local_id = f"py-{uuid.uuid4().hex}"
        now = self._clock()
        item: dict[str, Any] = {
            "id": local_id,
            "user": self.connection.user_id or "me",
            "text": text,
            "ts": time.time() * 1000.0,
        }
        frame = self._store.create(item, now)
        # createdAt on the wall clock (every client orders by it), not the loop clock of ``now``.
        data = {**frame["data"], "createdAt": item["ts"] / 1000.0}
        op_id = str(frame["msgId"])
        self._mine.add(local_id)
        self._outgoing[op_id] = item
        self._changed()
        self._tasks.spawn(self._publish(op_id, data))

    async def _publish(self, op_id: str, data: dict[str, Any]) -> None:
        try:
            ack = await asyncio.wrap_future(self.model.publish(data, wait=False))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._store.fail(op_id, str(getattr(exc, "code", None) or type(exc).__name__))
        else:
            ack = ack if isinstance(ack, dict) else {}
            offset = ack.get("offset")
            self._store.confirm(
                op_id,
                offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
                duplicate=ack.get("duplicate") is True,
            )
        if not self.closed:
            self._changed()

    def _on_tick(self, when: float) -> None:
        if self.closed:
            return
        self._store.tick(self._clock(when))
        self._changed()

    def _changed(self) -> None:
        """Apply the store's events, trim to the newest MAX_MESSAGES, push, re-arm the timer."""
        for ev in self._store.events():
            if isinstance(ev, RolledBack):
                item = self._outgoing.pop(ev.op_id, None)
                if item is not None:
                    # Shown as failed, not removed: the user sees what did not go out.
                    self._failed[ev.item_id] = item
                    log.info("Chat %r: message %r not sent: %s", self.model.name, ev.item_id, ev.reason)
            elif isinstance(ev, Confirmed):
                self._outgoing.pop(ev.op_id, None)
            elif isinstance(ev, Created):
                self._failed.pop(str(ev.item.get("id")), None)  # a late echo: it was sent after all
        entries = self._entries()
        for entry in entries[:-MAX_MESSAGES] if len(entries) > MAX_MESSAGES else []:
            if entry["pending"]:
                continue  # in flight: it settles (and is trimmed later) or fails by the timeout
            self._store.forget(entry["id"])
            self._failed.pop(entry["id"], None)
            self._mine.discard(entry["id"])
        self._sync.set(messages=self._entries())
        pending = self._store.pending()
        self._timer.schedule(min(op.sent_at for op in pending) + self._store.ack_timeout if pending else None)

    def _entries(self) -> list[dict[str, Any]]:
        pending = {op.item_id for op in self._store.pending()}
        items = [*self._store.data, *self._failed.values()]
        items.sort(key=lambda item: (float(item.get("ts") or 0.0), str(item.get("id"))))
        return [
            {
                "id": str(item["id"]),
                "user": str(item.get("user") or "?"),
                "text": str(item.get("text", "")),
                "ts": float(item.get("ts") or 0.0),
                "pending": item["id"] in pending,
                "failed": item["id"] in self._failed,
                "color": self._color(str(item.get("user") or "?")),
            }
            for item in items
        ]

    def _color(self, user: str) -> str:
        return self._colors.get(user) or color_for(user)

    # ------------------------------------------------------------------ observers

    def _on_connection(self, change: dict[str, Any]) -> None:
        if change["name"] == "state":
            self._sync.set(state=change["new"])
        else:
            self._sync.set(me=change["new"])

    def _on_members(self, _change: Any) -> None:
        me = self.connection.user_id
        groups = group_by_user(self.model.members)
        self._sync.set(typing=[g.user_id for g in groups if g.typing and g.user_id != me])
