"""Presence of a :class:`~rtwidgets.models.collab.CollabDoc`: our cursor, remote cursors, peers.

Rules of this module:

* Cursors travel in presence data (``{"name", "color", "cursor": {"anchor", "head"}}``) as
  base64 Yjs relative positions, so they move with concurrent edits; a position that does not
  resolve (text not received yet, or garbage) hides that cursor, it never fails the document.
* One presence update in flight at a time; moves made meanwhile collapse into the next one.
* Without an explicit name/colour the replica follows the gateway's user id (colour from
  :func:`rtwidgets.colors.color_for`, the palette shared with the browser).
* Runtime thread only. :class:`CollabCursors` is a mixin of ``CollabDoc``: it uses the
  document's state (declared below) and holds none of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pycrdt

from rtwidgets.colors import color_for
from rtwidgets.core import crdt_sync as cs
from rtwidgets.models._binding import TaskGroup, on_runtime
from rtwidgets.models.channel import Channel
from rtwidgets.models.connection import Connection

__all__ = ["TEXT_NAME", "CollabCursors"]

log = logging.getLogger("rtwidgets.models.collab")

TEXT_NAME = "text"  # the root Y.Text shared by Python and the browser (ydoc.getText("text"))


class CollabCursors:
    """Presence half of ``CollabDoc`` (a mixin): identity, our cursor, ``peers`` and ``cursors``."""

    # The document's state and traits this mixin works on (set by CollabDoc).
    name: str
    user_name: str
    color: str
    peers: list[dict[str, Any]]
    cursors: list[dict[str, Any]]
    connection: Connection
    _channel: Channel
    _ytext: pycrdt.Text
    _tasks: TaskGroup
    _closed: bool
    _auto_name: bool
    _auto_color: bool
    _my_cursor: dict[str, str] | None
    _presence_busy: bool
    _presence_dirty: bool
    hold_trait_notifications: Callable[[], AbstractContextManager[None]]

    def _my_client_id(self) -> str:
        raise NotImplementedError  # CollabDoc's

    def _presence_data(self) -> dict[str, Any]:
        return {"name": self.user_name, "color": self.color, "cursor": self._my_cursor}

    def _set_cursor_rt(self, anchor: int, head: int) -> None:
        current = str(self._ytext)
        for label, value in (("anchor", anchor), ("head", head)):
            if not 0 <= value <= len(current):
                raise IndexError(f"cursor {label} {value} outside 0..{len(current)}")

        def encode(index: int) -> str:
            return cs.b64encode(cs.sticky_position(self._ytext, TEXT_NAME, index))

        self._set_cursor_encoded(encode(anchor), encode(head))

    def _set_cursor_encoded(self, anchor: str | None, head: str | None) -> None:
        if anchor is None or head is None:
            cursor = None
        else:
            for label, value in (("anchor", anchor), ("head", head)):
                self._decode_position(cs.b64decode(value, label))  # refuse garbage before sharing it
            cursor = {"anchor": anchor, "head": head}
        if cursor == self._my_cursor:
            return
        self._my_cursor = cursor
        self._push_presence()

    def _push_presence(self) -> None:
        # One presence update in flight at a time; moves made meanwhile collapse into the next one.
        if self._presence_busy or self._closed:
            self._presence_dirty = True
            return
        self._presence_dirty = False
        self._presence_busy = True
        # Handed to the Channel now, not in the task below: a subscribe the Channel starts in this
        # same runtime step (the user id and "connected" arrive together) must already carry it,
        # or peers first see the stale data (e.g. "anonymous") until the update follows.
        future = self._channel.update_presence(self._presence_data(), wait=False)

        async def send() -> None:
            try:
                await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The client keeps presence data across reconnects only once it was accepted.
                log.info("collab %r: cursor update not sent: %s", self.name, exc)
                self._presence_dirty = True
            finally:
                self._presence_busy = False
            if self._presence_dirty and self._channel.is_subscribed:
                self._push_presence()

        self._tasks.spawn(send())

    def _decode_position(self, raw: bytes) -> int | None:
        try:
            return cs.resolve_position(self._ytext, TEXT_NAME, raw)
        except cs.CollabProtocolError:
            raise
        except Exception as exc:  # pycrdt raises several types for undecodable bytes
            raise cs.CollabProtocolError(f"not a Yjs relative position ({exc})") from None

    def _resolve(self, encoded: Any) -> int | None:
        try:
            return self._decode_position(cs.b64decode(encoded, "cursor"))
        except cs.CollabProtocolError:
            return None

    def _on_user_id(self, change: dict[str, Any]) -> None:
        on_runtime(self._adopt_user_id, str(change["new"] or ""))

    def _adopt_user_id(self, user_id: str) -> None:
        if not self._closed and self._take_identity(user_id):
            self._push_presence()

    def _take_identity(self, user_id: str) -> bool:
        """Runtime thread: name (and colour) this replica after ``user_id`` where they were not
        chosen explicitly; True if that changed anything."""
        if not user_id:
            return False
        name = user_id if self._auto_name else self.user_name
        color = color_for(name) if self._auto_color else self.color
        if (name, color) == (self.user_name, self.color):
            return False
        self.user_name, self.color = name, color
        return True

    def _on_members(self, _change: Any) -> None:
        on_runtime(self._refresh_cursors)

    def _refresh_cursors(self) -> None:
        if self._closed:
            return
        me = self._my_client_id()
        peers: list[dict[str, Any]] = []
        cursors: list[dict[str, Any]] = []
        for member in self._channel.members:
            raw = member.get("data")
            data: dict[str, Any] = raw if isinstance(raw, dict) else {}
            who = {
                "clientId": member.get("clientId"),
                "userId": member.get("userId"),
                "name": str(data.get("name") or member.get("userId") or "?"),
                "color": str(data.get("color") or color_for(str(member.get("userId")))),
            }
            peers.append(who)
            cursor = data.get("cursor")
            if member.get("clientId") == me or not isinstance(cursor, dict):
                continue
            anchor = self._resolve(cursor.get("anchor"))
            head = self._resolve(cursor.get("head"))
            if anchor is None or head is None:
                continue  # refers to text we have not received yet, or garbage
            cursors.append(
                {
                    **who,
                    "anchor": anchor,
                    "head": head,
                    "anchorPos": cursor["anchor"],
                    "headPos": cursor["head"],
                }
            )
        with self.hold_trait_notifications():
            if peers != self.peers:
                self.peers = peers
            if cursors != self.cursors:
                self.cursors = cursors
