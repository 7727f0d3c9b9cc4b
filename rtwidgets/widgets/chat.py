"""``Chat``: a message feed with optimistic sends and typing indicators over a Channel.

Messages are published as ``{"text": str, "localId": str}``; the local id lets the
sender match the echo of its own message to the pending entry it showed at once.
Typing travels in presence data (``{"typing": bool}``), so a PresenceBar on the same
channel shows it too. All feed state lives on the runtime thread.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from traitlets import List, Unicode

from rtwidgets.core.presence import group_by_user
from rtwidgets.models.channel import Channel
from rtwidgets.models.connection import Connection
from rtwidgets.widgets._base import IntentError, RealtimeWidget, color_for, require_str

__all__ = ["MAX_MESSAGES", "MAX_TEXT", "Chat"]

MAX_MESSAGES = 200
MAX_TEXT = 4000


def _text_of(data: Any) -> str:
    text = data.get("text") if isinstance(data, dict) else None
    if isinstance(text, str):
        return text
    # Not a chat message (another publisher on the channel): show it, never drop it silently.
    return orjson.dumps(data).decode()


class Chat(RealtimeWidget):
    """A chat on ``channel_or_connection``: a :class:`Channel`, or a :class:`Connection` plus
    ``name`` (then the widget owns a presence channel with 50 messages of history and
    closes it with itself). ``user_colors`` maps user ids to CSS colours."""

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
        self._entries: list[dict[str, Any]] = []  # runtime thread only
        self._by_local: dict[str, dict[str, Any]] = {}
        self._seen: set[str] = set()
        super().__init__(
            channel=channel.name,
            me=self.connection.user_id,
            state=self.connection.state,
            **kwargs,
        )
        if owned:
            self._on_close(channel.close)
        self._observe(self.connection, self._on_connection, ["state", "user_id"])
        self._observe(channel, self._on_members, ["members"])
        self._sync.refresh(lambda: {"state": self.connection.state, "me": self.connection.user_id})
        self._run(self._seed)

    # ------------------------------------------------------------------ Python API

    def post(self, text: str, local_id: str | None = None) -> str:
        """Send ``text`` (shown at once as pending); returns the local id of the entry."""
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
        return [dict(e) for e in self._entries]

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
        for frame in self.model.messages:
            self._add_frame(frame)
        self._unsub = self.model.on_message(self._on_frame)
        self._on_close(self._unsub)
        self._push()
        self._on_members(None)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self._add_frame(frame)
            self._push()

    def _add_frame(self, frame: dict[str, Any]) -> None:
        event_id = str(frame.get("id") or frame.get("eventId") or "")
        if event_id and event_id in self._seen:
            return  # already shown (ack before echo, or a replay)
        data = frame.get("data")
        local_id = data.get("localId") if isinstance(data, dict) else None
        # Local ids are random per send, so sender + local id identifies our own echo (also
        # after a reconnect, when our clientId changed).
        mine = frame.get("senderId") == self.connection.client.user_id
        if mine and isinstance(local_id, str) and local_id in self._by_local:
            self._confirm(self._by_local[local_id], frame)
            return
        if event_id:
            self._seen.add(event_id)
        user = str(frame.get("senderId") or "?")
        self._entries.append(
            {
                "id": event_id or f"anon-{len(self._entries)}",
                "user": user,
                "text": _text_of(data),
                "ts": float(frame.get("timestamp") or time.time() * 1000.0),
                "pending": False,
                "failed": False,
                "color": self._color(user),
            }
        )

    def _confirm(self, entry: dict[str, Any], frame_or_ack: dict[str, Any]) -> None:
        event_id = str(frame_or_ack.get("eventId") or frame_or_ack.get("id") or "")
        if event_id:
            self._seen.add(event_id)
        entry["pending"] = False
        entry["failed"] = False
        if frame_or_ack.get("timestamp"):
            entry["ts"] = float(frame_or_ack["timestamp"])

    def _post(self, text: str, local_id: str) -> None:
        if self.closed:
            return
        if local_id in self._by_local:
            return  # the same intent twice (a re-sent comm message): already shown and sent
        me = self.connection.user_id or "me"
        entry = {
            "id": local_id,
            "user": me,
            "text": text,
            "ts": time.time() * 1000.0,
            "pending": True,
            "failed": False,
            "color": self._color(me),
        }
        self._entries.append(entry)
        self._by_local[local_id] = entry
        self._push()
        future = self.model.publish({"text": text, "localId": local_id}, wait=False)
        future.add_done_callback(lambda f: self._run(self._sent, entry, f))

    def _sent(self, entry: dict[str, Any], future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            entry.update(pending=False, failed=True)
        elif entry["pending"]:
            self._confirm(entry, future.result() or {})
        self._push()

    def _push(self) -> None:
        del self._entries[:-MAX_MESSAGES]
        live = {id(e) for e in self._entries}
        for local_id in [k for k, e in self._by_local.items() if id(e) not in live]:
            del self._by_local[local_id]
        self._sync.set(messages=[dict(e) for e in self._entries])

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
