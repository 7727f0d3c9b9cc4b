"""``TodoList``: a shared todo list with optimistic edits and visible rollbacks.

Items are ``{"id", "text", "done"}`` in an :class:`~rtwidgets.models.optimistic.OptimisticList`.
Intents apply at once (pending) and are confirmed or rolled back by the gateway.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from traitlets import Dict, Int, List, Unicode

from rtwidgets.models.optimistic import OptimisticList
from rtwidgets.widgets._base import IntentError, RealtimeWidget, require_str

__all__ = ["MAX_TEXT", "TodoList"]

log = logging.getLogger("rtwidgets.widgets")

MAX_TEXT = 1000


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
    """Shows and edits an :class:`OptimisticList` of todo items."""

    _bundle = "todo_list"

    channel = Unicode("").tag(sync=True)
    items: List[dict[str, Any]] = List().tag(sync=True)
    pending_count = Int(0).tag(sync=True)
    last_rollback = Dict().tag(sync=True)
    state = Unicode("disconnected").tag(sync=True)

    def __init__(self, optimistic_list: OptimisticList, **kwargs: Any) -> None:
        if not isinstance(optimistic_list, OptimisticList):
            raise TypeError(f"TodoList needs an OptimisticList, got {type(optimistic_list).__name__}")
        self.model = optimistic_list
        self.connection = optimistic_list.connection
        super().__init__(
            channel=optimistic_list.name,
            items=_items(optimistic_list),
            pending_count=len(optimistic_list.pending_ops),
            last_rollback=dict(optimistic_list.last_rollback),
            state=self.connection.state,
            **kwargs,
        )
        self._observe(
            optimistic_list, self._on_list, ["data", "pending_items", "pending_ops", "last_rollback"]
        )
        self._observe(self.connection, self._on_state, ["state"])
        # Catch changes made between reading the initial state and installing the observers.
        self._sync.refresh(
            lambda: {
                "items": _items(optimistic_list),
                "pending_count": len(optimistic_list.pending_ops),
                "last_rollback": dict(optimistic_list.last_rollback),
                "state": self.connection.state,
            }
        )

    # ------------------------------------------------------------------ Python API

    def add(self, text: str) -> str:
        """Create a todo (optimistically); returns its item id."""
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
        self._sync.set(
            last_rollback={
                "opId": "",
                "itemId": item_id,
                "kind": kind,
                "reason": f"refused locally: {exc}",
                "ts": round(time.time() * 1000.0, 3),
            }
        )

    def _on_list(self, change: dict[str, Any]) -> None:
        model = self.model
        if change["name"] == "last_rollback":
            self._sync.set(last_rollback=dict(change["new"]))
        else:
            self._sync.set(items=_items(model), pending_count=len(model.pending_ops))

    def _on_state(self, change: dict[str, Any]) -> None:
        self._sync.set(state=change["new"])
