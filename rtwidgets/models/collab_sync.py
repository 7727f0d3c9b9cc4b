"""The receiving half of a :class:`~rtwidgets.models.collab.CollabDoc`: channel frames in.

Rules of this module:

* Every message on the document's channel is parsed by :mod:`rtwidgets.core.crdt_sync`; a bad
  one is refused visibly (counted in ``bad_messages``, named in ``error``), never applied half.
* Our own updates coming back are not applied again; updates whose dependencies never arrived
  are held (``HeldUpdates``) and we ask the peers for what we lack, once, with our state vector.
* On every (re)subscribe the channel's keyed snapshot is applied, failed publishes are queued
  again, and our state vector goes out so peers send what we missed and we send what they did.
* Runtime thread only. :class:`CollabReceiver` is a mixin of ``CollabDoc``: it uses the
  document's state (declared below) and holds none of its own.
"""

from __future__ import annotations

from typing import Any

import pycrdt

from rtwidgets.core import crdt_sync as cs
from rtwidgets.models._binding import on_runtime
from rtwidgets.models.channel import Channel

__all__ = ["CollabReceiver"]


class CollabReceiver:
    """Receiving half of ``CollabDoc`` (a mixin): frames, remote updates, (re)subscribe catch-up."""

    # The document's state this mixin works on (set by CollabDoc.__init__; traits included).
    _closed: bool
    _ydoc: pycrdt.Doc[Any]
    _channel: Channel
    _captured: list[bytes]
    _held: cs.HeldUpdates
    _asked_for_missing: bool
    _policy: cs.SnapshotPolicy
    _pending: cs.PendingUpdates
    _outbox: list[bytes]
    _was_subscribed: bool
    _presence_dirty: bool
    is_subscribed: bool
    synced: bool

    def _my_client_id(self) -> str:
        raise NotImplementedError  # CollabDoc's

    def _refuse(self, reason: str) -> None:
        raise NotImplementedError  # CollabDoc's

    def _after_change(self, origin: Any) -> None:
        raise NotImplementedError  # CollabDoc's

    def _send_ephemeral(self, data: dict[str, Any]) -> None:
        raise NotImplementedError  # CollabPublisher's

    def _maybe_snapshot(self) -> None:
        raise NotImplementedError  # CollabPublisher's

    def _kick_sender(self) -> None:
        raise NotImplementedError  # CollabPublisher's

    def _push_presence(self) -> None:
        raise NotImplementedError  # CollabCursors'

    def _apply_remote(self, update: bytes, what: str) -> None:
        self._captured.clear()
        try:
            self._integrate(update)
        except ValueError as exc:
            self._refuse(f"{what} is not a valid Yjs update ({exc})")
            return
        self._after_change("remote")

    def _integrate(self, update: bytes) -> None:
        before = self._ydoc.get_state()
        self._ydoc.apply_update(update)
        after = self._ydoc.get_state()
        if self._held.note(update, after) and not self._asked_for_missing:
            # Something it builds on never reached us: ask the peers for what we lack.
            self._asked_for_missing = True
            me = self._my_client_id()
            if me:
                self._send_ephemeral(cs.state_vector_message(after, me))
        if len(self._held) and after != before:
            self._held.retry(self._ydoc.apply_update, self._ydoc.get_state)
        if not len(self._held):
            self._asked_for_missing = False

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            msg = cs.parse_doc_message(frame.get("data"))
        except cs.CollabProtocolError as exc:
            self._refuse(f"message {frame.get('eventId') or ''} from {frame.get('senderId')!r}: {exc}")
            return
        mine = frame.get("clientId") == self._my_client_id()
        if isinstance(msg, cs.UpdateMessage):
            self._policy.observe_update()
            if not mine:
                self._apply_remote(msg.update, "an update")
            self._maybe_snapshot()
        elif isinstance(msg, cs.SnapshotMessage):
            self._policy.observe_snapshot()
            if not mine:
                self._apply_remote(msg.update, "a snapshot")
        elif isinstance(msg, cs.StateVectorMessage):
            if not mine:
                self._on_state_vector(msg)
        elif isinstance(msg, cs.DiffMessage) and msg.to == self._my_client_id() and not mine:
            self._apply_remote(msg.update, "a diff")

    def _on_state_vector(self, msg: cs.StateVectorMessage) -> None:
        me = self._my_client_id()
        if msg.to is not None and msg.to != me:
            return  # a reply meant for someone else
        try:
            theirs = cs.decode_state_vector(msg.state)
            diff = self._ydoc.get_update(msg.state)
        except (cs.CollabProtocolError, ValueError) as exc:
            self._refuse(f"state vector from {msg.sender!r}: {exc}")
            return
        if not cs.is_empty_update(diff):
            self._send_ephemeral(cs.diff_message(diff, msg.sender))
        ours = cs.decode_state_vector(self._ydoc.get_state())
        if msg.to is None and cs.has_unseen(ours, theirs):
            # The asker has edits we never received (e.g. made while we were both cut off).
            self._send_ephemeral(cs.state_vector_message(self._ydoc.get_state(), me, to=msg.sender))

    def _on_reset(self, reset: Any) -> None:
        # Continuity was lost beyond the gateway's history: apply the snapshot and the tail.
        if self._closed:
            return
        state = getattr(reset, "state", None) or {}
        frame = state.get(cs.STATE_KEY)
        if isinstance(frame, dict):
            self._on_frame(frame)
        for event in getattr(reset, "events", ()):
            if isinstance(event, dict):
                self._on_frame(event)

    def _on_subscribed_change(self, change: dict[str, Any]) -> None:
        on_runtime(self._subscribed_changed, bool(change["new"]))

    def _subscribed_changed(self, subscribed: bool) -> None:
        if self._closed or subscribed == self._was_subscribed:
            return
        self._was_subscribed = subscribed
        self.is_subscribed = subscribed
        if not subscribed:
            return
        handle = self._channel.handle
        state = getattr(handle, "state", None) or {}
        frame = state.get(cs.STATE_KEY)
        if isinstance(frame, dict):
            self._on_frame(frame)
        failed = self._pending.take_failed()
        if failed is not None:
            self._outbox.insert(0, failed)
        self._kick_sender()
        me = self._my_client_id()
        if me:
            self._send_ephemeral(cs.state_vector_message(self._ydoc.get_state(), me))
        if self._presence_dirty:
            self._push_presence()
        self.synced = True
