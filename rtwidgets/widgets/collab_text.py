"""``CollabText``: a CodeMirror 6 editor on a :class:`~rtwidgets.models.collab.CollabDoc`.

Every browser view keeps its own Y.Doc, synced with the kernel's pycrdt document by custom
messages carrying binary buffers (the kernel relays to and from the channel):

* view -> kernel: ``{"action": "sync"}`` + ``[state_vector]`` (answered with ``{"type": "sync"}``
  + ``[what the view lacks]``); ``{"action": "update"}`` + ``[update]`` for each local edit;
  ``{"action": "cursor", "anchor": b64|None, "head": b64|None}`` (Yjs relative positions);
* kernel -> views: ``{"type": "update"}`` + ``[merged updates]`` at most ``update_rate`` times/s:
  ``max_rate`` or less, this stream being one more member of the process-wide comm message
  budget (:func:`rtwidgets.set_message_budget`), next to the widget's trait syncs.

The editor applies remote deltas through y-codemirror.next, so the caret survives remote edits.
Closing the widget does not close the document (several widgets may show one document).
"""

from __future__ import annotations

from typing import Any

import pycrdt
import traitlets

from rtwidgets.core import crdt_sync as cs
from rtwidgets.models._binding import CoalescedSync
from rtwidgets.models.collab import CollabDoc
from rtwidgets.widgets._base import IntentError, RealtimeWidget, log

__all__ = ["CollabText"]

MAX_VIEW_UPDATE_BYTES = 4 * 1024 * 1024  # one keystroke batch; a paste of a large file is still fine


class CollabText(RealtimeWidget):
    """A shared text editor. ``CollabText(doc, height=240, placeholder="")``.

    Synced traits (read-only for users): ``channel``, ``user_name``, ``color``, ``client_id``,
    ``peers``, ``cursors`` (remote cursors with base64 relative positions), ``status``
    (``connecting|reconnecting|offline|syncing|live``); ``height`` (px) and ``placeholder`` may be set.

    Args:
        doc: the :class:`~rtwidgets.models.collab.CollabDoc` to edit.
        height: the editor's height in pixels (an int >= 0; ``0``: grow with the text).
        placeholder: shown while the text is empty.
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        TypeError: ``doc`` is not a ``CollabDoc``.
        ValueError: ``height`` is not an int >= 0.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

    _bundle = "collab_text"

    channel = traitlets.Unicode("").tag(sync=True)
    user_name = traitlets.Unicode("").tag(sync=True)
    color = traitlets.Unicode("").tag(sync=True)
    client_id = traitlets.Unicode("").tag(sync=True)
    peers: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    cursors: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    status = traitlets.Unicode("connecting").tag(sync=True)
    height = traitlets.Int(240).tag(sync=True)
    placeholder = traitlets.Unicode("").tag(sync=True)

    def __init__(self, doc: CollabDoc, *, height: int = 240, placeholder: str = "", **kwargs: Any) -> None:
        if not isinstance(doc, CollabDoc):
            raise TypeError(f"CollabText needs a CollabDoc, got {type(doc).__name__}")
        if isinstance(height, bool) or not isinstance(height, int) or height < 0:
            raise ValueError(f"height must be an int >= 0 (pixels; 0 = grow with the text), got {height!r}")
        super().__init__(channel=doc.name, height=height, placeholder=placeholder, **kwargs)
        self.doc = doc
        self._pending: list[bytes] = []
        # Document updates go through a second CoalescedSync, so they are paced, counted in the
        # shared comm budget and idle while the document is quiet, like every widget update; its
        # flush sends the merged updates as one custom message (it sets no trait).
        self._updates = CoalescedSync(self, max_rate=self.max_rate)
        self._on_close(self._updates.close)
        self.updates_sent = 0  # kernel -> view update messages (after coalescing)
        self._observe(
            doc, self._mirror, ["peers", "cursors", "is_subscribed", "synced", "user_name", "color"]
        )
        self._observe(doc.connection, self._mirror, ["state", "client_id"])
        self._mirror(None)
        self._run(self._attach)

    def __repr__(self) -> str:
        return f"<CollabText {self.channel!r} user={self.user_name!r}>"

    @property
    def update_rate(self) -> float:
        """Update messages per second now allowed: ``max_rate`` or this stream's budget share
        (a trickle while the document has been quiet for a while)."""
        return self._updates.budget_share

    # ------------------------------------------------------------------ kernel -> views

    def _attach(self) -> None:
        if self.closed:
            return
        self._on_close(self.doc.add_update_listener(self._on_doc_update))

    def _mirror(self, _change: Any) -> None:
        doc, conn = self.doc, self.doc.connection
        if conn.state != "connected":
            status = {"disconnected": "offline", "failed": "offline"}.get(conn.state, conn.state)
        else:
            status = "live" if doc.synced and doc.is_subscribed else "syncing"
        cursors = [
            {k: c.get(k) for k in ("clientId", "userId", "name", "color", "anchorPos", "headPos")}
            for c in doc.cursors
        ]
        self._sync.set(
            user_name=doc.user_name,
            color=doc.color,
            client_id=conn.client_id,
            peers=list(doc.peers),
            cursors=cursors,
            status=status,
        )

    def _on_doc_update(self, update: bytes, _origin: str) -> None:
        # Every view gets every change (the one that typed it applies a no-op), merged per flush.
        self._pending.append(update)
        self._updates.set_later(self._send_updates)

    def _send_updates(self, _now: float) -> dict[str, Any]:
        """Flush-time callback of ``_updates``: one message with everything pending."""
        if self.closed or not self._pending:
            return {}
        merged = self._pending[0] if len(self._pending) == 1 else pycrdt.merge_updates(*self._pending)
        self._pending.clear()
        self.updates_sent += 1
        self.send({"type": "update"}, [merged])
        return {}

    # ------------------------------------------------------------------ views -> kernel

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        try:
            self.handle_intent(content, buffers)
        except IntentError as exc:
            self._refuse_intent(content, exc)

    def handle_intent(self, content: Any, buffers: list[Any] | None = None) -> None:
        """Validate and dispatch one browser intent (with its binary buffers); raise
        :class:`IntentError` if it is malformed.

        Args:
            content: the intent, an object with an ``action`` (``sync``, ``update`` or
                ``cursor``) and its fields.
            buffers: its binary buffers (``sync`` and ``update`` need exactly one).

        Raises:
            IntentError: not an object, an unknown action, a bad field or buffer, or the widget
                is closed.
        """
        handler = self._intent_handler(content)
        handler(content, [bytes(b) for b in (buffers or [])])

    @staticmethod
    def _one_buffer(action: str, buffers: list[bytes]) -> bytes:
        if len(buffers) != 1:
            raise IntentError(f"intent {action!r} needs exactly one binary buffer, got {len(buffers)}")
        if len(buffers[0]) > MAX_VIEW_UPDATE_BYTES:
            raise IntentError(f"intent {action!r}: buffer over {MAX_VIEW_UPDATE_BYTES} bytes")
        return buffers[0]

    def _intent_sync(self, _content: dict[str, Any], buffers: list[bytes]) -> None:
        state_vector = self._one_buffer("sync", buffers)
        try:
            cs.decode_state_vector(state_vector)
        except cs.CollabProtocolError as exc:
            raise IntentError(f"intent 'sync': bad state vector ({exc})") from None
        self._run(self._answer_sync, state_vector)

    def _answer_sync(self, state_vector: bytes) -> None:
        if not self.closed:
            self.send({"type": "sync"}, [self.doc.diff_since(state_vector)])

    def _intent_update(self, _content: dict[str, Any], buffers: list[bytes]) -> None:
        update = self._one_buffer("update", buffers)
        try:
            pycrdt.get_state(update)  # decodes the whole update: garbage is refused here
        except ValueError as exc:
            raise IntentError(f"intent 'update': not a Yjs update ({exc})") from None
        self._run(self._apply_update, update)

    def _apply_update(self, update: bytes) -> None:
        if self.closed or self.doc.closed:
            log.warning("CollabText %r: an edit arrived after close and was not applied", self.channel)
            return
        self.doc.apply_view_update(update)

    def _intent_cursor(self, content: dict[str, Any], _buffers: list[bytes]) -> None:
        anchor, head = content.get("anchor"), content.get("head")
        if anchor is None and head is None:
            self._run(self._set_cursor, None, None)
            return
        for label, value in (("anchor", anchor), ("head", head)):
            try:
                cs.b64decode(value, label)
            except cs.CollabProtocolError as exc:
                raise IntentError(f"intent 'cursor': {exc}") from None
        self._run(self._set_cursor, anchor, head)

    def _set_cursor(self, anchor: str | None, head: str | None) -> None:
        if self.closed or self.doc.closed:
            return
        try:
            self.doc.set_cursor_positions(anchor, head)
        except cs.CollabProtocolError as exc:
            log.warning("CollabText %r: refused cursor: %s", self.channel, exc)
