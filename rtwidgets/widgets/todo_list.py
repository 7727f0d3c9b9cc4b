"""``TodoList``: a shared todo list with optimistic edits and visible rollbacks.

Items are ``{"id", "text", "done"}`` in an :class:`~rtwidgets.models.optimistic.OptimisticList`.
Intents apply at once (pending) and are confirmed or rolled back by the gateway.

Rollbacks are one-off events: each flush sends every rollback since the last one as a custom
message ``{"type": "rollback", "rollbacks": [{opId, itemId, kind, reason, ts}, ...]}`` (a
latest-wins trait would show only the last of two rollbacks that fall into one flush).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from traitlets import Dict, Int, List, Unicode

from rtwidgets.core.optimistic import RolledBack
from rtwidgets.models.optimistic import OptimisticList
from rtwidgets.widgets._base import IntentError, RealtimeWidget, require_str

__all__ = ["MAX_TEXT", "TodoList"]

log = logging.getLogger("rtwidgets.widgets")

MAX_TEXT = 1000
# Rollbacks waiting for the next flush: beyond this the oldest are dropped, and counted.
MAX_QUEUED_ROLLBACKS = 100


def _items(model: OptimisticList) -> list[dict[str, Any]]:
    pending = set(model.pending_items)
    return [
        {
            "id": str(item.get("id")),
            "text": str(item.get("text", "")),
            "done": item.get("done") is True,
            "pending": item.get("id") in pending,
        }
        for item in model.data
    ]


class TodoList(RealtimeWidget):
    """Shows and edits an :class:`OptimisticList` of todo items.

    Args:
        optimistic_list: the list to show and edit (items ``{id, text, done}``).
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        TypeError: ``optimistic_list`` is not an :class:`OptimisticList`.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

    _bundle = "todo_list"

    channel = Unicode("").tag(sync=True)
    items: List[dict[str, Any]] = List().tag(sync=True)
    pending_count = Int(0).tag(sync=True)
    last_rollback = Dict(help="the newest rollback (Python side; views get every one as a message)")
    state = Unicode("disconnected").tag(sync=True)

    def __init__(self, optimistic_list: OptimisticList, **kwargs: Any) -> None:
        if not isinstance(optimistic_list, OptimisticList):
            raise TypeError(f"TodoList needs an OptimisticList, got {type(optimistic_list).__name__}")
        self.model = optimistic_list
        self.connection = optimistic_list.connection
        self._rollbacks: list[dict[str, Any]] = []  # runtime thread only: for the next flush
        self.rollbacks_dropped = 0  # queued rollbacks dropped (more than MAX_QUEUED_ROLLBACKS)
        self.rollbacks_sent = 0  # rollbacks sent to the views
        super().__init__(
            channel=optimistic_list.name,
            items=_items(optimistic_list),
            pending_count=len(optimistic_list.pending_ops),
            last_rollback=dict(optimistic_list.last_rollback),
            state=self.connection.state,
            **kwargs,
        )
        self._observe(optimistic_list, self._on_list, ["data", "pending_items", "pending_ops"])
        self._observe(self.connection, self._on_state, ["state"])
        # The store's events carry every rollback; the model's last_rollback trait only the newest.
        self._on_close(optimistic_list.on_change(self._on_events))
        # Catch changes made between reading the initial state and installing the observers.
        self._sync.refresh(
            lambda: {
                "items": _items(optimistic_list),
                "pending_count": len(optimistic_list.pending_ops),
                "state": self.connection.state,
            }
        )

    # ------------------------------------------------------------------ Python API

    def add(self, text: str) -> str:
        """Create a todo (optimistically); returns its item id.

        Non-blocking: a rollback shows in ``last_rollback``, not as an exception.

        Args:
            text: the todo's text (stripped), not blank, at most ``MAX_TEXT`` characters.

        Raises:
            IntentError: ``text`` is blank or too long (a ``ValueError``).
        """
        return self._create(text)

    def __repr__(self) -> str:
        return f"<TodoList channel={self.channel!r} items={len(self.items)} pending={self.pending_count}>"

    # ------------------------------------------------------------------ intents

    def _intent_create(self, content: dict[str, Any]) -> None:
        self._create(require_str(content, "text", max_len=MAX_TEXT))

    def _intent_toggle(self, content: dict[str, Any]) -> None:
        item = self._item(content)
        self._submit("update", {**item, "done": item.get("done") is not True})

    def _intent_edit(self, content: dict[str, Any]) -> None:
        item = self._item(content)
        self._submit("update", {**item, "text": require_str(content, "text", max_len=MAX_TEXT).strip()})

    def _intent_delete(self, content: dict[str, Any]) -> None:
        self._submit("delete", self._item(content)["id"])

    # ------------------------------------------------------------------ helpers

    def _create(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise IntentError("a todo needs a non-empty text")
        if len(text) > MAX_TEXT:
            raise IntentError(f"a todo text is limited to {MAX_TEXT} characters")
        item_id = uuid.uuid4().hex
        self._submit("create", {"id": item_id, "text": text.strip(), "done": False})
        return item_id

    def _item(self, content: dict[str, Any]) -> dict[str, Any]:
        item_id = require_str(content, "id", max_len=128)
        item = self.model.get(item_id)
        if item is None:
            raise IntentError(f"no todo with id {item_id!r} (deleted meanwhile?)")
        return item

    def _submit(self, kind: str, arg: Any) -> None:
        # Non-blocking: intents may arrive on a kernel subshell thread.
        future = self.model.submit(kind, arg)
        item_id = arg.get("id") if isinstance(arg, dict) else arg
        future.add_done_callback(lambda f: self._report(f, kind, str(item_id)))

    def _report(self, future: Any, kind: str, item_id: str) -> None:
        exc = future.exception()
        if exc is None:
            return
        # E.g. the item vanished between the intent and its turn on the runtime thread. Nothing
        # was applied, but the user clicked: show it like a rollback so the browser learns it.
        log.warning("TodoList: %s of %r refused locally: %s", kind, item_id, exc)
        self._queue_rollback("", item_id, kind, f"refused locally: {exc}")

    def _on_events(self, events: list[Any]) -> None:
        # Runtime thread (OptimisticList.on_change).
        for ev in events:
            if isinstance(ev, RolledBack):
                self._queue_rollback(ev.op_id, ev.item_id, ev.kind, ev.reason)

    def _queue_rollback(self, op_id: str, item_id: str, kind: str, reason: str) -> None:
        """Runtime thread: keep a rollback for the next flush (every one reaches the views)."""
        if self.closed:
            return
        rollback = {
            "opId": op_id,
            "itemId": item_id,
            "kind": kind,
            "reason": reason,
            "ts": round(time.time() * 1000.0, 3),
        }
        self.last_rollback = rollback
        self._rollbacks.append(rollback)
        if len(self._rollbacks) > MAX_QUEUED_ROLLBACKS:
            # Bounded: a flood (a read-only token and a script) must not grow memory. Counted.
            excess = len(self._rollbacks) - MAX_QUEUED_ROLLBACKS
            del self._rollbacks[:excess]
            self.rollbacks_dropped += excess
        self._sync.set_later(self._send_rollbacks)

    def _send_rollbacks(self, _now: float) -> dict[str, Any]:
        """Flush-time callback: one message with every rollback queued since the last flush."""
        rollbacks, self._rollbacks = self._rollbacks, []
        if rollbacks and not self.closed:
            self.send({"type": "rollback", "rollbacks": rollbacks})
            self.rollbacks_sent += len(rollbacks)
        return {}

    def _on_list(self, change: dict[str, Any]) -> None:
        model = self.model
        self._sync.set(items=_items(model), pending_count=len(model.pending_ops))

    def _on_state(self, change: dict[str, Any]) -> None:
        self._sync.set(state=change["new"])
