"""Hooks a :class:`~rtwidgets.widgets.collab_text.CollabText` view uses on its
:class:`~rtwidgets.models.collab.CollabDoc`: updates out, edits and cursors in.

Runtime thread only. :class:`CollabViewHooks` is a mixin of ``CollabDoc``: it uses the
document's state (declared below) and holds none of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pycrdt

from rtwidgets.core import crdt_sync as cs

__all__ = ["CollabViewHooks", "Origin", "UpdateListener"]

Origin = str  # "local" (Python API), "view" (a browser view), "remote" (the channel)
# listener(update, origin): one Yjs update and where it came from
UpdateListener = Callable[[bytes, Origin], None]


class CollabViewHooks:
    """What a view may do on the runtime thread (a mixin of ``CollabDoc``)."""

    _ydoc: pycrdt.Doc[Any]
    _listeners: list[UpdateListener]

    def _apply_local_update_rt(self, update: bytes, origin: Origin) -> str:
        raise NotImplementedError  # CollabDoc's

    def _set_cursor_encoded(self, anchor: str | None, head: str | None) -> None:
        raise NotImplementedError  # CollabCursors'

    def add_update_listener(self, listener: UpdateListener) -> Callable[[], None]:
        """``listener(update, origin)`` on the runtime thread for every change; returns a remover.

        Args:
            listener: receives the change as one Yjs update and its origin (``"local"``,
                ``"view"`` or ``"remote"``); an exception it raises is logged.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def diff_since(self, state_vector: bytes) -> bytes:
        """Runtime thread: the update a replica with ``state_vector`` lacks (``ValueError`` if bad).

        Args:
            state_vector: the other replica's Yjs state vector.

        Raises:
            ValueError: ``state_vector`` is malformed.
        """
        cs.decode_state_vector(state_vector)  # clear error for garbage before pycrdt sees it
        return self._ydoc.get_update(state_vector)

    def apply_view_update(self, update: bytes) -> None:
        """Runtime thread: apply an edit typed in a browser view (published to the channel).

        Args:
            update: the view's Yjs update.

        Raises:
            ValueError: ``update`` is not a Yjs update.
        """
        self._apply_local_update_rt(update, "view")

    def set_cursor_positions(self, anchor: str | None, head: str | None) -> None:
        """Runtime thread: set our cursor from base64 Yjs relative positions (from a browser).

        Args:
            anchor: the selection's start (``None``, or ``head`` ``None``: no cursor).
            head: the selection's end, the caret.

        Raises:
            ValueError: a position is not a base64 Yjs relative position.
        """
        self._set_cursor_encoded(anchor, head)
