"""``CollabDoc``: a shared text document (a ``pycrdt`` Doc) bound to an rtwidgets channel.

Every replica — other kernels, browsers (through :class:`~rtwidgets.widgets.CollabText`),
test code — edits its own copy; Yjs updates travel over the channel and every copy converges
to the same text. The wire format and the pure pieces live in :mod:`rtwidgets.core.crdt_sync`.

How a replica stays complete (Yjs updates are idempotent, so these paths may overlap):

* each local transaction is published as a stored ``update``; at most one publish is in flight,
  the rest is merged meanwhile (so typing bursts never hit the gateway's rate limit);
* joining (and every re-subscribe) replays the channel: the keyed ``doc`` snapshot, then the
  retained history; continuity lost beyond the history arrives as a reset and is applied too;
* after (re)subscribing the replica announces its state vector (ephemeral ``sv``); live peers
  answer with a ``diff`` of what it lacks and ask back for what they lack;
* local updates whose publish failed (offline for good, refused) are merged and published again
  after the next subscribe: an edit made while disconnected survives the reconnect;
* every ``snapshot_every`` stored updates some replica publishes a compacted snapshot.

The document's concerns live in three modules: this one (the document, its edits and the channel
input), :mod:`rtwidgets.models.collab_publish` (publishing local updates and snapshots) and
:mod:`rtwidgets.models.collab_cursors` (presence: our cursor, remote cursors and peers); the
latter two are mixins of :class:`CollabDoc`, sharing its state.

Threading: the pycrdt Doc is mutated only on the rtwidgets runtime thread. Public methods may be
called from any thread; mutating ones hand over and (by default) wait, so ``doc.text`` reflects
your own edit as soon as ``insert`` returns. Traits are set on the runtime thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pycrdt
from traitlets import Bool, HasTraits, Int, List, Unicode

from rtwidgets.colors import color_for
from rtwidgets.core import crdt_sync as cs
from rtwidgets.errors import CollabError  # defined there; re-exported from here
from rtwidgets.models._binding import TaskGroup, run_blocking
from rtwidgets.models.channel import Channel
from rtwidgets.models.collab_cursors import TEXT_NAME, CollabCursors
from rtwidgets.models.collab_publish import FINAL_PUBLISH_ERRORS, RATE_LIMIT_RETRY_S, CollabPublisher
from rtwidgets.models.collab_sync import CollabReceiver
from rtwidgets.models.collab_view import CollabViewHooks, Origin, UpdateListener
from rtwidgets.models.connection import Connection
from rtwidgets.runtime import get_runtime

__all__ = [
    "FINAL_PUBLISH_ERRORS",
    "RATE_LIMIT_RETRY_S",
    "TEXT_NAME",
    "CollabDoc",
    "CollabError",
    "TextChange",
]

log = logging.getLogger("rtwidgets.models.collab")
T = TypeVar("T")

# Gateway default max_message_bytes is 65 536; base64 inflates by 4/3 and the envelope adds a
# little. Local inserts above this are refused up front (nothing half-applied).
MAX_INSERT_BYTES = 40_000



@dataclass(frozen=True)
class TextChange:
    """Passed to :meth:`CollabDoc.on_change` callbacks: the new text and where the change came from."""

    text: str
    origin: Origin


class CollabDoc(HasTraits, CollabPublisher, CollabCursors, CollabReceiver, CollabViewHooks):
    """A collaborative text document on channel ``name`` of ``connection``.

    ``text`` is the current text; ``cursors`` the other participants' cursors (one dict per
    remote connection with a cursor: ``clientId``, ``userId``, ``name``, ``color``, ``anchor``,
    ``head`` as Python character indexes, and ``anchorPos``/``headPos``, the base64 Yjs relative
    positions); ``peers`` everyone present; ``synced`` turns true once the initial state arrived.
    Indexes are Python ``str`` indexes (code points).

    Args:
        connection: the :class:`Connection` to share over.
        name: the channel (one document per channel).
        user_name: our name on cursors and in ``peers`` (default: the gateway's user id once
            known, ``"anonymous"`` until then).
        color: our cursor colour, a CSS colour (default: derived from ``user_name``).
        snapshot_every: stored updates (an int >= 1) after which a compacted snapshot is
            published.

    Raises:
        TypeError: ``connection`` is not a :class:`Connection`.
        ValueError: ``snapshot_every`` is not an int >= 1.
        ProtocolError: ``name`` is not a valid channel name.
        TimeoutError: the runtime thread did not set the document up within 30 s.
    """

    name = Unicode(read_only=True)
    text = Unicode("", help="the current text")
    version = Int(0, help="incremented on every change of the document")
    synced = Bool(False, help="the channel's state has been received (initial sync done)")
    is_subscribed = Bool(False)
    user_name = Unicode("")
    color = Unicode("")
    cursors: List[dict[str, Any]] = List(
        help="remote cursors: {clientId, userId, name, color, anchor, head, anchorPos, headPos}"
    )
    peers: List[dict[str, Any]] = List(help="everyone on the document: {clientId, userId, name, color}")
    error = Unicode("", help="the last problem (publish refused, bad payload); '' when fine")

    def __init__(
        self,
        connection: Connection,
        name: str,
        *,
        user_name: str | None = None,
        color: str | None = None,
        snapshot_every: int = 50,
    ) -> None:
        if not isinstance(connection, Connection):
            raise TypeError(f"connection must be an rtwidgets Connection, got {type(connection).__name__}")
        super().__init__()
        self.set_trait("name", name)
        self.connection = connection
        # Without an explicit name/colour, follow the gateway's user id once it is known (the
        # connection may still be connecting). This first value is provisional: the user id may
        # arrive before _attach runs, which reads it again (see _attach).
        self._auto_name = not user_name
        self._auto_color = not color
        self.user_name = user_name or connection.user_id or "anonymous"
        self.color = color or color_for(self.user_name)
        self._runtime = get_runtime()
        self._loop = self._runtime.loop
        self._tasks = TaskGroup(f"collab {name!r}")
        self._ydoc: pycrdt.Doc[Any] = pycrdt.Doc()
        self._ytext: pycrdt.Text = self._ydoc.get(TEXT_NAME, type=pycrdt.Text)
        self._captured: list[bytes] = []
        self._sub = self._ydoc.observe(lambda event: self._captured.append(event.update))
        self._policy = cs.SnapshotPolicy(snapshot_every)
        self._pending = cs.PendingUpdates()
        self._held = cs.HeldUpdates()
        self._asked_for_missing = False
        self._outbox: list[bytes] = []
        self._sending = False
        self._snapshotting = False
        self._my_cursor: dict[str, str] | None = None
        self._presence_busy = False
        self._presence_dirty = False
        self._listeners: list[UpdateListener] = []
        self._change_callbacks: list[Callable[[TextChange], None]] = []
        self._closed = False
        self.bad_messages = 0  # payloads refused (malformed); each is logged and shown in ``error``
        self._was_subscribed = False
        self._channel: Channel
        self._unsubs: list[Callable[[], None]] = []
        # The channel is created on the runtime thread together with our listeners, so that no
        # history frame can be delivered before we listen (its subscribe runs on that loop).
        self._call(self._attach, timeout=30.0)
        connection.attached.add(self)

    # ------------------------------------------------------------------ public API (any thread)

    @property
    def channel(self) -> Channel:
        """The underlying :class:`Channel` model."""
        return self._channel

    def insert(self, index: int, text: str, *, timeout: float = 10.0) -> str:
        """Insert ``text`` before character ``index``; returns the new text.

        Raises ``IndexError`` if ``index`` is outside ``0..len(text)``, ``ValueError`` for an
        insert over ``MAX_INSERT_BYTES`` UTF-8 bytes (publish it in several inserts).

        Args:
            index: a character index in ``0..len(text)``.
            text: the text to insert (at most ``MAX_INSERT_BYTES`` UTF-8 bytes).
            timeout: seconds to wait for the runtime thread.

        Raises:
            TypeError: ``text`` is not a str or ``index`` not an int.
            IndexError: ``index`` outside ``0..len(text)``.
            ValueError: ``text`` is over ``MAX_INSERT_BYTES`` UTF-8 bytes.
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        _check_int("index", index)
        if len(text.encode("utf-8")) > MAX_INSERT_BYTES:
            raise ValueError(f"insert of more than {MAX_INSERT_BYTES} UTF-8 bytes: split it into several")
        return self._call(self._insert_rt, index, text, timeout=timeout)

    def delete(self, index: int, length: int, *, timeout: float = 10.0) -> str:
        """Delete ``length`` characters starting at ``index``; returns the new text.

        Args:
            index: the first character to delete.
            length: how many characters to delete (``index + length <= len(text)``).
            timeout: seconds to wait for the runtime thread.

        Raises:
            TypeError: ``index`` or ``length`` is not an int.
            IndexError: a negative value, or the range is outside the text.
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        _check_int("index", index)
        _check_int("length", length)
        return self._call(self._delete_rt, index, length, timeout=timeout)

    def replace(self, text: str, start: int = 0, end: int | None = None, *, timeout: float = 10.0) -> str:
        """Make characters ``start..end`` (default: the whole text) equal to ``text``.

        Only the part that really differs is deleted and inserted, so concurrent edits and
        cursors elsewhere in the document are preserved. Returns the new text.

        Args:
            text: the new content of the range (at most ``MAX_INSERT_BYTES`` UTF-8 bytes).
            start: the range's first character index.
            end: the index after its last character (``None``: the end of the text).
            timeout: seconds to wait for the runtime thread.

        Raises:
            TypeError: ``text`` is not a str, or ``start``/``end`` not an int.
            IndexError: not ``0 <= start <= end <= len(text)``.
            ValueError: ``text`` is over ``MAX_INSERT_BYTES`` UTF-8 bytes.
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        _check_int("start", start)
        if end is not None:
            _check_int("end", end)
        if len(text.encode("utf-8")) > MAX_INSERT_BYTES:
            raise ValueError(f"replacement of more than {MAX_INSERT_BYTES} UTF-8 bytes: split it")
        return self._call(self._replace_rt, text, start, end, timeout=timeout)

    def edit(self, fn: Callable[[pycrdt.Doc[Any]], T], *, timeout: float = 10.0) -> T:
        """Run ``fn(ydoc)`` in one transaction on the runtime thread and share what it changed.

        For structured state next to the text: ``doc.edit(lambda d: d.get("meta",
        type=pycrdt.Map).__setitem__("title", "Notes"))``; a Y.Map / Y.Array lives in the same
        Yjs document, so it syncs, merges and catches up exactly like the text. ``fn`` must not
        keep references to the document's objects (they belong to the runtime thread).

        Args:
            fn: called with the ``pycrdt.Doc``; what it changed is shared even if it raises
                half-way (Yjs cannot roll back), and its exception is re-raised here.
            timeout: seconds to wait for the runtime thread.

        Returns:
            What ``fn`` returned.

        Raises:
            TypeError: ``fn`` is not callable.
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        if not callable(fn):
            raise TypeError("edit() needs a callable taking the pycrdt Doc")
        return self._call(lambda: self._edit_rt(fn), timeout=timeout)

    def read(self, fn: Callable[[pycrdt.Doc[Any]], T], *, timeout: float = 10.0) -> T:
        """Return ``fn(ydoc)`` computed on the runtime thread (convert to plain Python inside ``fn``).

        Args:
            fn: called with the ``pycrdt.Doc``; it must not change it.
            timeout: seconds to wait for the runtime thread.

        Raises:
            TypeError: ``fn`` is not callable.
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        if not callable(fn):
            raise TypeError("read() needs a callable taking the pycrdt Doc")
        return self._call(fn, self._ydoc, timeout=timeout)

    def on_change(self, callback: Callable[[TextChange], None]) -> Callable[[], None]:
        """Call ``callback(TextChange)`` on the runtime thread after every change; returns an unsubscribe.

        (``doc.observe(handler, names="text")`` works too: ``CollabDoc`` is a ``HasTraits``.)

        Args:
            callback: receives a :class:`TextChange`; an exception it raises is logged.

        Returns:
            A function that removes ``callback`` (idempotent).
        """
        self._change_callbacks.append(callback)
        return lambda: self._change_callbacks.remove(callback) if callback in self._change_callbacks else None

    def wait_for_text(self, expected: str | Callable[[str], bool], timeout: float = 10.0) -> str:
        """Block until the text equals ``expected`` (or ``expected(text)`` is true); return it.

        Args:
            expected: the text to wait for, or a predicate on the text.
            timeout: seconds to wait.

        Raises:
            RuntimeError: called on the runtime thread.
            TimeoutError: no match within ``timeout`` seconds (the message shows the text).
        """
        predicate = expected if callable(expected) else (lambda t: t == expected)
        if self._runtime.in_runtime_thread():
            raise RuntimeError("wait_for_text() would block the runtime thread; use on_change instead")
        changed = threading.Event()

        def poke(_change: Any) -> None:
            changed.set()

        self.observe(poke, names=["text"])
        try:
            deadline = time.monotonic() + timeout
            while not predicate(self.text):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"text of {self.name!r} did not match within {timeout} s; it is {self.text!r:.200}"
                    )
                changed.wait(remaining)
                changed.clear()
        finally:
            self.unobserve(poke, names=["text"])
        return self.text

    def wait_synced(self, timeout: float = 10.0) -> CollabDoc:
        """Block until the initial state of the channel has been received.

        Args:
            timeout: seconds to wait.

        Returns:
            This document, for chaining.

        Raises:
            TimeoutError: not synced within ``timeout`` seconds.
        """
        self.connection.wait_for(lambda: self.synced, timeout, f"initial sync of {self.name!r}")
        return self

    def set_cursor(self, anchor: int | None, head: int | None = None, *, timeout: float = 10.0) -> None:
        """Show our cursor (``head`` defaults to ``anchor``; a selection when they differ) to others.

        ``None`` removes it. Positions are stored as Yjs relative positions, so they move with
        concurrent edits.

        Args:
            anchor: where the selection starts, a character index (``None``: no cursor).
            head: where it ends, the caret (default: ``anchor``).
            timeout: seconds to wait for the runtime thread.

        Raises:
            TypeError: a position is not an int.
            IndexError: a position outside ``0..len(text)``.
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        if anchor is None:
            self._call(self._set_cursor_encoded, None, None, timeout=timeout)
            return
        _check_int("anchor", anchor)
        _check_int("head", anchor if head is None else head)
        self._call(self._set_cursor_rt, anchor, anchor if head is None else head, timeout=timeout)

    def state_update(self, *, timeout: float = 10.0) -> bytes:
        """The whole document as one Yjs update (``Y.applyUpdate`` in a browser rebuilds it).

        Args:
            timeout: seconds to wait for the runtime thread.

        Raises:
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        return self._call(self._ydoc.get_update, timeout=timeout)

    def state_vector(self, *, timeout: float = 10.0) -> bytes:
        """This replica's Yjs state vector (equal vectors mean equal documents).

        Args:
            timeout: seconds to wait for the runtime thread.

        Raises:
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        return self._call(self._ydoc.get_state, timeout=timeout)

    def apply_update(self, update: bytes, *, timeout: float = 10.0) -> str:
        """Apply a Yjs update made elsewhere as a local edit (it is published); returns the text.

        Raises ``ValueError`` if the bytes are not a Yjs update.

        Args:
            update: a Yjs update (e.g. another document's :meth:`state_update`).
            timeout: seconds to wait for the runtime thread.

        Raises:
            ValueError: ``update`` is not a Yjs update.
            CollabError: the document is closed.
            TimeoutError: the runtime thread did not run it within ``timeout`` seconds.
        """
        return self._call(self._apply_local_update_rt, bytes(update), "local", timeout=timeout)

    def stats(self) -> dict[str, Any]:
        """Counters: queued/in-flight/failed local updates, refused payloads, snapshot progress."""
        return {
            "outbox": len(self._outbox),
            "in_flight": self._pending.in_flight,
            "failed": self._pending.failed,
            "held": len(self._held),
            "bad_messages": self.bad_messages,
            "since_snapshot": self._policy.since_snapshot,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Leave the channel (our cursor disappears for others) and stop all work (idempotent).

        Args:
            timeout: seconds to wait for the unsubscribe; past it the document is closed anyway.
        """
        if self._closed:
            return
        self._closed = True
        for unsub in self._unsubs:
            unsub()
        self._channel.unobserve(self._on_subscribed_change, names=["is_subscribed"])
        self._channel.unobserve(self._on_members, names=["members"])
        self._tasks.cancel_all()
        self._channel.close(timeout)
        self._listeners.clear()
        self._change_callbacks.clear()
        self.is_subscribed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return (
            f"<CollabDoc {self.name!r} user={self.user_name!r} chars={len(self.text)} "
            f"synced={self.synced} peers={len(self.peers)}>"
        )

    # ------------------------------------------------------------------ runtime-thread internals

    def _attach(self) -> None:
        # The connection sets ``user_id`` on this (runtime) thread. __init__ read it on the
        # caller's thread, and the handshake may have finished since: without this second look
        # that change is never observed and the document is "anonymous" for good. Reading it here
        # and observing it below happen in one runtime step, so no change can fall in between.
        # Doing it before the Channel exists also puts the real name in the first subscribe.
        self._take_identity(self.connection.user_id)
        # Validates the channel name and owns the subscription (resubscribes after reconnects).
        self._channel = Channel(
            self.connection,
            self.name,
            presence=True,
            presence_data=self._presence_data(),
            history=1_000_000,  # everything retained: the snapshot alone may be older than the tail
            state=True,
            max_messages=1,
        )
        self._unsubs = [self._channel.on_message(self._on_frame), self._channel.on_reset(self._on_reset)]
        self._channel.observe(self._on_subscribed_change, names=["is_subscribed"])
        self._channel.observe(self._on_members, names=["members"])
        if self._auto_name or self._auto_color:
            self.connection.observe(self._on_user_id, names=["user_id"])
            self._unsubs.append(lambda: self.connection.unobserve(self._on_user_id, names=["user_id"]))

    def _call(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        if self._closed:
            raise CollabError(f"CollabDoc {self.name!r} is closed")
        if self._runtime.in_runtime_thread():
            return fn(*args)

        async def run() -> T:
            return fn(*args)

        return run_blocking(run(), timeout, f"CollabDoc {self.name!r}")

    def _transact(self, origin: Origin, mutate: Callable[[], None]) -> None:
        self._captured.clear()
        try:
            with self._ydoc.transaction():
                mutate()
        finally:
            # Yjs cannot roll back: if ``mutate`` raised half-way, what it did is shared anyway.
            self._after_change(origin)

    def _edit_rt(self, fn: Callable[[pycrdt.Doc[Any]], T]) -> T:
        result: list[T] = []
        self._transact("local", lambda: result.append(fn(self._ydoc)))
        return result[0]

    def _insert_rt(self, index: int, text: str) -> str:
        current = str(self._ytext)
        if not 0 <= index <= len(current):
            raise IndexError(f"insert index {index} outside 0..{len(current)}")
        if text:
            self._transact("local", lambda: self._ytext.insert(cs.utf8_offset(current, index), text))
        return self.text

    def _delete_rt(self, index: int, length: int) -> str:
        current = str(self._ytext)
        if not 0 <= index <= len(current) or index + length > len(current):
            raise IndexError(f"delete of {length} at {index} outside the text of {len(current)} characters")
        if length:
            start = cs.utf8_offset(current, index)
            stop = cs.utf8_offset(current, index + length)
            self._transact("local", lambda: self._ytext.__delitem__(slice(start, stop)))
        return self.text

    def _replace_rt(self, text: str, start: int, end: int | None) -> str:
        current = str(self._ytext)
        stop = len(current) if end is None else end
        if not 0 <= start <= stop <= len(current):
            raise IndexError(f"replace range {start}..{stop} outside 0..{len(current)}")
        at, count, insert = cs.minimal_edit(current[start:stop], text)
        at += start
        if count or insert:
            b0, b1 = cs.utf8_offset(current, at), cs.utf8_offset(current, at + count)

            def mutate() -> None:
                if b1 > b0:
                    del self._ytext[b0:b1]
                if insert:
                    self._ytext.insert(b0, insert)

            self._transact("local", mutate)
        return self.text

    def _apply_local_update_rt(self, update: bytes, origin: Origin) -> str:
        self._captured.clear()
        self._integrate(update)  # ValueError for bytes that are not an update
        self._after_change(origin)
        return self.text

    def _after_change(self, origin: Origin) -> None:
        updates, self._captured = self._captured, []
        if not updates:
            return  # nothing new (a duplicate, or an update still waiting for its dependencies)
        if origin != "remote":
            self._outbox.extend(updates)
            self._kick_sender()
        merged = updates[0] if len(updates) == 1 else pycrdt.merge_updates(*updates)
        text = str(self._ytext)
        with self.hold_trait_notifications():
            self.text = text
            self.version += 1
        for listener in list(self._listeners):
            _safe(listener, merged, origin)
        change = TextChange(text, origin)
        for cb in list(self._change_callbacks):
            _safe(cb, change)
        if self._my_cursor is not None or self.cursors:
            self._refresh_cursors()

    # -- channel input

    def _my_client_id(self) -> str:
        return self.connection.client.client_id or ""

    # -- errors

    def _refuse(self, reason: str) -> None:
        self.bad_messages += 1
        self._set_error(f"refused {reason}")
        log.warning("collab %r: refused %s", self.name, reason)

    def _set_error(self, message: str) -> None:
        if self.error != message:
            self.error = message


def _check_int(label: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{label} must be an int, got {type(value).__name__}")
    if value < 0:
        raise IndexError(f"{label} must be >= 0, got {value}")


def _safe(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("collab listener %r failed", fn)
