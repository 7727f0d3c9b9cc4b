"""Optimistic list of items with ids, synced over a keyed channel: ``OptimisticStore``.

The logic of the design's ``useOptimisticRealtime`` hook (docs/design.md#optimistic-updates),
sans-I/O. Rules of this module:

* No I/O, no clock reads: ``now`` (seconds, the caller's clock) is passed in and op ids
  come from an injectable ``new_id``. Methods return frames to send; the caller feeds back
  ``message`` / ``ack`` / ``error`` / ``history`` frames. Changes are reported as events
  (:meth:`OptimisticStore.events`).
* Wire format (one key per item, so the gateway's keyed state *is* the list):
  create/update publish ``data = {type, item, opId, createdAt}`` with ``key = item id``;
  delete publishes ``data = None`` with ``key = item id``, which makes the gateway delete
  the key. A snapshot (key -> latest message frame) therefore rebuilds the list exactly,
  and a deleted item leaves no tombstone behind. Every publish carries ``msgId = opId``
  (and ``_id = opId``) so the server de-duplicates retries and ``ack``/``error`` correlate.
* The list order is ``(createdAt, id)``: ``createdAt`` travels with the item, so every
  client (live or rebuilt from a snapshot) shows the same order.
* Two layers are kept: the **confirmed** items (what the server said) and the **pending**
  ops in the order they were made. The visible list is always confirmed + pending ops
  re-applied. Rolling an op back recomputes from those two layers instead of restoring a
  saved ``previousItem`` as the design does: that naive restore would undo a *remote*
  update that arrived after the op (or resurrect an item another client deleted), and
  would drop the effect of a later local op on the same item.
* Any message for a key (create, update, or a remote update of an item we never saw) sets
  the key, and ``data = None`` deletes it: the same rule as the gateway's keyed state, so
  the client converges to the server's list.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rtwidgets.core._compat import deprecated_alias
from rtwidgets.errors import StoreError  # defined there; re-exported from here

__all__ = [
    "Confirmed",
    "Created",
    "Deleted",
    "OptimisticStore",
    "PendingOp",
    "RolledBack",
    "StoreError",
    "StoreEvent",
    "Updated",
]

OpKind = Literal["create", "update", "delete"]


# ------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Created:
    """An item appeared in the visible list."""

    item: dict[str, Any]


@dataclass(frozen=True)
class Updated:
    """A visible item changed."""

    item: dict[str, Any]
    previous: dict[str, Any]


@dataclass(frozen=True)
class Deleted:
    """A visible item disappeared."""

    item_id: str
    previous: dict[str, Any]


@dataclass(frozen=True)
class Confirmed:
    """The server stored op ``op_id`` (by ``ack`` or by its echoed message)."""

    op_id: str
    kind: OpKind
    item_id: str


@dataclass(frozen=True)
class RolledBack:
    """Op ``op_id`` was undone: ``reason`` is the server's error code or ``'timeout'``."""

    op_id: str
    kind: OpKind
    item_id: str
    reason: str


StoreEvent = Created | Updated | Deleted | Confirmed | RolledBack


@dataclass
class PendingOp:
    """A local op not yet confirmed. ``sent_at`` restarts when the op is re-sent."""

    op_id: str
    kind: OpKind
    item_id: str
    item: dict[str, Any] | None
    created_at: float
    sent_at: float
    # Server offset seen when the op was sent: a later frame for the same key makes an
    # ack (which has no offset) ambiguous, see ``confirm``.
    sent_watermark: int


@dataclass(frozen=True)
class _Entry:
    item: dict[str, Any]
    created_at: float


def _default_id() -> str:
    return uuid.uuid4().hex


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _item_id(item: Any, what: str) -> str:
    if not isinstance(item, Mapping):
        raise TypeError(f"{what}: item must be a mapping with a string 'id', got {type(item).__name__}")
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ValueError(f"{what}: item needs a non-empty string 'id', got {item_id!r}")
    return item_id


class OptimisticStore:
    """An ordered list of ``{'id': str, ...}`` items with optimistic local edits.

    Caller obligations: send the frame each of :meth:`create` / :meth:`update` /
    :meth:`delete` returns; feed the channel's frames to :meth:`on_frame` (or the
    specific ``on_message`` / ``confirm`` / ``fail`` / ``load_snapshot``); call
    :meth:`tick` periodically so unacknowledged ops roll back after ``ack_timeout``
    seconds; after a reconnect send :meth:`resend_frames` (same op ids: the server keeps
    each op once). Subscribe with ``state: True`` so a resubscribe can rebuild the list.
    """

    def __init__(
        self,
        channel: str,
        *,
        ack_timeout: float = 10.0,
        new_id: Callable[[], str] = _default_id,
        initial: list[Mapping[str, Any]] | None = None,
    ) -> None:
        if not isinstance(channel, str) or not channel:
            raise ValueError("channel must be a non-empty string")
        if _number(ack_timeout) is None or ack_timeout <= 0:
            raise ValueError(f"ack_timeout must be a positive number of seconds, got {ack_timeout!r}")
        self.channel = channel
        self.ack_timeout = float(ack_timeout)
        self._new_id = new_id
        self._confirmed: dict[str, _Entry] = {}
        self._view: dict[str, _Entry] = {}
        self._pending: dict[str, PendingOp] = {}  # insertion order = the order ops were made
        self._key_offset: dict[str, int] = {}  # last server offset applied per key
        self._offset = 0  # highest server offset applied (per epoch)
        self._epoch: str | None = None
        self._events: list[StoreEvent] = []
        self._sorted: list[dict[str, Any]] | None = None
        # ``initial`` is treated as confirmed server state (the design's initialData).
        for index, item in enumerate(initial or []):
            item_id = _item_id(item, "initial")
            if item_id in self._confirmed:
                raise ValueError(f"initial: duplicate item id {item_id!r}")
            self._confirmed[item_id] = _Entry(copy.deepcopy(dict(item)), float(index))
        self._view = dict(self._confirmed)

    # ------------------------------------------------------------------ reading
    @property
    def data(self) -> list[dict[str, Any]]:
        """The visible items ordered by ``(createdAt, id)``. Treat them as read-only."""
        if self._sorted is None:
            entries = sorted(self._view.items(), key=lambda kv: (kv[1].created_at, kv[0]))
            self._sorted = [entry.item for _, entry in entries]
        return list(self._sorted)

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The visible item with ``item_id``, or None."""
        entry = self._view.get(item_id)
        return entry.item if entry is not None else None

    @property
    def confirmed_data(self) -> list[dict[str, Any]]:
        """The items as last confirmed by the server (no pending ops), in list order."""
        entries = sorted(self._confirmed.items(), key=lambda kv: (kv[1].created_at, kv[0]))
        return [entry.item for _, entry in entries]

    @property
    def pending_ops(self) -> frozenset[str]:
        return frozenset(self._pending)

    @property
    def has_pending_ops(self) -> bool:
        return bool(self._pending)

    def pending(self) -> list[PendingOp]:
        """Pending ops in the order they were made."""
        return list(self._pending.values())

    def is_pending(self, item_id: str) -> bool:
        """True while an unconfirmed local op touches ``item_id``."""
        return any(op.item_id == item_id for op in self._pending.values())

    @property
    def offset(self) -> int:
        """Highest server offset applied (0: none)."""
        return self._offset

    @property
    def epoch(self) -> str | None:
        return self._epoch

    def events(self) -> list[StoreEvent]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    drain_events = deprecated_alias("drain_events", events)

    # --------------------------------------------------------------- local ops
    def create(self, item: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Add ``item`` at once; return the ``publish`` frame. Refuses an id already listed."""
        item_id = _item_id(item, "create")
        if item_id in self._view:
            raise ValueError(f"create: an item with id {item_id!r} already exists; use update")
        return self._local("create", item_id, copy.deepcopy(dict(item)), self._now(now), now)

    def update(self, item: Mapping[str, Any], now: float) -> dict[str, Any]:
        """Replace the item with ``item['id']`` at once; return the ``publish`` frame."""
        item_id = _item_id(item, "update")
        entry = self._view.get(item_id)
        if entry is None:
            raise KeyError(f"update: no item with id {item_id!r}")
        return self._local("update", item_id, copy.deepcopy(dict(item)), entry.created_at, now)

    def delete(self, item_id: str, now: float) -> dict[str, Any]:
        """Remove the item at once; return the ``publish`` frame (``data: None`` + ``key``)."""
        if not isinstance(item_id, str) or not item_id:
            raise ValueError(f"delete: item_id must be a non-empty string, got {item_id!r}")
        entry = self._view.get(item_id)
        if entry is None:
            raise KeyError(f"delete: no item with id {item_id!r}")
        return self._local("delete", item_id, None, entry.created_at, now)

    def resend_frames(self, now: float) -> list[dict[str, Any]]:
        """Frames for every pending op, oldest first, to send after a reconnect.

        Their ack timeouts restart at ``now``. The op ids are unchanged, so an op the
        server already stored is not stored twice.
        """
        self._now(now)
        frames = []
        for op in self._pending.values():
            op.sent_at = now
            op.sent_watermark = self._offset
            frames.append(self._frame(op))
        return frames

    def forget(self, item_id: str) -> bool:
        """Drop a confirmed item from this replica only (nothing is published, no event).

        For a feed that shows only its newest items (a chat): memory stays bounded. An item a
        pending op touches is kept (returns False). Frames at or below :attr:`offset` stay
        ignored, so a replay does not bring a forgotten item back.
        """
        if item_id not in self._confirmed or self.is_pending(item_id):
            return False
        del self._confirmed[item_id]
        self._view.pop(item_id, None)
        self._key_offset.pop(item_id, None)
        self._sorted = None
        return True

    # ------------------------------------------------------------ server input
    def on_frame(self, frame: Mapping[str, Any]) -> bool:
        """Dispatch one server frame of this channel; return False if it was not for the store.

        ``message`` -> :meth:`on_message`; ``ack`` / ``error`` whose ``id`` is a pending
        op id -> :meth:`confirm` / :meth:`fail`; ``history`` -> :meth:`load_snapshot` of its
        ``state`` when present (subscribe with ``state: True``; always sent when
        ``recovered`` is False), then its events in offset order.
        """
        if not isinstance(frame, Mapping):
            raise StoreError(f"frame must be a mapping, got {type(frame).__name__}")
        ftype = frame.get("type")
        if ftype == "message":
            self.on_message(frame)
            return True
        if ftype == "ack":
            op_id = frame.get("id")
            offset = frame.get("offset")
            if not isinstance(op_id, str) or op_id not in self._pending:
                return False
            if isinstance(offset, bool) or not isinstance(offset, int):
                offset = None
            return self.confirm(op_id, offset, duplicate=frame.get("duplicate") is True)
        if ftype == "error":
            op_id = frame.get("id")
            reason = frame.get("code") or "error"
            return isinstance(op_id, str) and self.fail(op_id, str(reason))
        if ftype == "history":
            self._handle_history(frame)
            return True
        return False

    handle_frame = deprecated_alias("handle_frame", on_frame)

    def on_message(self, frame: Mapping[str, Any]) -> None:
        """Apply one channel ``message``: the server's version replaces the optimistic one.

        An echo of our own op (``msgId`` or ``data.opId``) confirms it. Frames whose
        ``offset`` was already applied (same epoch) are ignored, so replays are harmless.
        A frame that does not describe an item raises :class:`StoreError`.
        """
        key, value, created_at, op_id, offset, epoch = self._parse_message(frame)
        stale = False
        if offset is not None:
            if epoch is not None and epoch != self._epoch:
                if self._epoch is not None:
                    # The server lost its history (new epoch): offsets restart from 1.
                    self._offset, self._key_offset = 0, {}
                self._epoch = epoch
            if offset <= self._offset:
                # Old news (a replay, or history below a snapshot). If it is our own op,
                # the op was stored and the state we hold already reflects or supersedes it.
                if op_id is not None and op_id in self._pending:
                    self._confirm_without_applying(op_id)
                return
            self._offset = offset
            # An ack that carried a newer offset for this item already settled it.
            stale = offset <= self._key_offset.get(key, 0)
            if not stale:
                self._key_offset[key] = offset
        if op_id is not None and op_id in self._pending:
            op = self._pending.pop(op_id)
            self._events.append(Confirmed(op.op_id, op.kind, op.item_id))
        if not stale:
            self._set_confirmed(key, value, created_at)
        self._refresh(key)

    handle_message = deprecated_alias("handle_message", on_message)

    def confirm(self, op_id: str, offset: int | None = None, *, duplicate: bool = False) -> bool:
        """The server stored op ``op_id`` (an ``ack``). Returns False if it is not pending.

        The op's effect moves into the confirmed layer, except when the server order is
        unknown: ``duplicate`` (a retry of an op stored earlier, whose effect the server
        state already reflects or a later write superseded), or a server frame for the same
        item arrived after the op was sent and ``offset`` (when the ack carries it) does not
        show ours is newer. Then the frames already seen stand, and the op's echo, applied
        in offset order if it comes, settles the item.
        """
        op = self._pending.pop(op_id, None)
        if op is None:
            return False
        self._events.append(Confirmed(op.op_id, op.kind, op.item_id))
        key_offset = self._key_offset.get(op.item_id, 0)
        ambiguous = key_offset > op.sent_watermark if offset is None else key_offset >= offset
        if not (duplicate or ambiguous):
            self._set_confirmed(op.item_id, op.item, op.created_at)
            if offset is not None:
                # Not the global watermark: frames below ``offset`` may still be in flight.
                self._key_offset[op.item_id] = offset
        self._refresh(op.item_id)
        return True

    def fail(self, op_id: str, reason: str) -> bool:
        """The server refused op ``op_id``: roll it back exactly. False if it is not pending."""
        op = self._pending.pop(op_id, None)
        if op is None:
            return False
        self._events.append(RolledBack(op.op_id, op.kind, op.item_id, reason))
        self._refresh(op.item_id)
        return True

    def tick(self, now: float) -> list[str]:
        """Roll back ops not acknowledged within ``ack_timeout``; return their ids.

        If such an op was in fact stored, its echo arrives later and is applied like any
        server message, so the list still converges to the server's.
        """
        self._now(now)
        expired = [op.op_id for op in self._pending.values() if now - op.sent_at >= self.ack_timeout]
        for op_id in expired:
            self.fail(op_id, "timeout")
        return expired

    def load_snapshot(
        self, state: Mapping[str, Mapping[str, Any]], *, offset: int | None = None, epoch: str | None = None
    ) -> None:
        """Replace the confirmed items with a keyed snapshot (key -> latest message frame).

        ``offset``: the channel offset the snapshot is at (default: the newest frame's);
        later messages at or below it are ignored. Pending ops stay on top (re-send them
        with :meth:`resend_frames`); those whose ``msgId`` is in the snapshot are confirmed.
        """
        if not isinstance(state, Mapping):
            raise StoreError(
                f"snapshot state must map item ids to message frames, got {type(state).__name__}"
            )
        parsed = []
        for key, frame in state.items():
            parsed.append(self._parse_message(frame, expect_key=str(key)))
        newest = 0
        confirmed: dict[str, _Entry] = {}
        key_offset: dict[str, int] = {}
        snap_epoch = epoch
        for key, value, created_at, op_id, frame_offset, frame_epoch in parsed:
            if value is not None:
                confirmed[key] = _Entry(value, created_at)
            if frame_offset is not None:
                newest = max(newest, frame_offset)
                key_offset[key] = frame_offset
            if snap_epoch is None and frame_epoch is not None:
                snap_epoch = frame_epoch
            if op_id is not None and op_id in self._pending:
                op = self._pending.pop(op_id)
                self._events.append(Confirmed(op.op_id, op.kind, op.item_id))
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int) or offset < 0):
            raise StoreError(f"snapshot offset must be an integer >= 0, got {offset!r}")
        touched = set(self._confirmed) | set(confirmed)
        self._confirmed = confirmed
        self._key_offset = key_offset
        self._offset = offset if offset is not None else newest
        self._epoch = snap_epoch
        for key in sorted(touched | {op.item_id for op in self._pending.values()}):
            self._refresh(key)

    # ---------------------------------------------------------------- internals
    @staticmethod
    def _now(now: float) -> float:
        value = _number(now)
        if value is None:
            raise ValueError(f"now must be a finite number of seconds, got {now!r}")
        return value

    def _local(
        self, kind: OpKind, item_id: str, item: dict[str, Any] | None, created_at: float, now: float
    ) -> dict[str, Any]:
        self._now(now)
        op_id = self._new_id()
        if not isinstance(op_id, str) or not op_id or op_id in self._pending:
            raise ValueError(f"new_id must return a fresh non-empty string, got {op_id!r}")
        op = PendingOp(op_id, kind, item_id, item, created_at, now, self._offset)
        self._pending[op_id] = op
        self._refresh(item_id)
        return self._frame(op)

    def _frame(self, op: PendingOp) -> dict[str, Any]:
        data: dict[str, Any] | None = None
        if op.item is not None:
            data = {"type": op.kind, "item": op.item, "opId": op.op_id, "createdAt": op.created_at}
        return {
            "type": "publish",
            "channel": self.channel,
            "data": data,
            "key": op.item_id,
            "msgId": op.op_id,
            "_id": op.op_id,
        }

    def _parse_message(
        self, frame: Any, expect_key: str | None = None
    ) -> tuple[str, dict[str, Any] | None, float, str | None, int | None, str | None]:
        """-> (key, item or None for delete, createdAt, own op id, offset, epoch)."""
        if not isinstance(frame, Mapping) or frame.get("type") != "message":
            raise StoreError("expected a 'message' frame")
        if frame.get("channel") not in (None, self.channel):
            raise StoreError(
                f"message for channel {frame.get('channel')!r} handed to store of {self.channel!r}"
            )
        data = frame.get("data")
        key = frame.get("key")
        item: dict[str, Any] | None = None
        if data is not None:
            if not isinstance(data, Mapping) or not isinstance(data.get("item"), Mapping):
                raise StoreError("message data must be null (delete) or {type, item: {id, ...}, ...}")
            raw_item = data["item"]
            item_id = raw_item.get("id")
            if not isinstance(item_id, str) or not item_id:
                raise StoreError(f"message item needs a non-empty string 'id', got {item_id!r}")
            if key is None:
                key = item_id  # a publish in the design's style, without ``key``
            elif key != item_id:
                raise StoreError(f"message key {key!r} does not match its item id {item_id!r}")
            # The design's hook deletes with {type: 'delete', item: {id}}: accept it too.
            if data.get("type") != "delete":
                item = copy.deepcopy(dict(raw_item))
        if not isinstance(key, str) or not key:
            raise StoreError("a delete message (data null) needs a string 'key'")
        if expect_key is not None and key != expect_key:
            raise StoreError(f"snapshot entry {expect_key!r} holds a frame for key {key!r}")
        op_id = frame.get("msgId")
        if not isinstance(op_id, str) and isinstance(data, Mapping):
            op_id = data.get("opId")
        offset = frame.get("offset")
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
            raise StoreError(f"message 'offset' must be an integer, got {offset!r}")
        epoch = frame.get("epoch")
        created_at = _number(data.get("createdAt")) if isinstance(data, Mapping) else None
        if created_at is None:
            existing = self._view.get(key) or self._confirmed.get(key)
            if existing is not None:
                created_at = existing.created_at
            else:
                # A foreign publisher without createdAt: the server timestamp (ms) orders it.
                stamp = _number(frame.get("timestamp"))
                created_at = stamp / 1000.0 if stamp is not None else 0.0
        return (
            key,
            item,
            created_at,
            op_id if isinstance(op_id, str) else None,
            offset,
            epoch if isinstance(epoch, str) else None,
        )

    def _confirm_without_applying(self, op_id: str) -> None:
        op = self._pending.pop(op_id)
        self._events.append(Confirmed(op.op_id, op.kind, op.item_id))
        self._refresh(op.item_id)

    def _set_confirmed(self, key: str, item: dict[str, Any] | None, created_at: float) -> None:
        if item is None:
            self._confirmed.pop(key, None)
        else:
            self._confirmed[key] = _Entry(item, created_at)

    def _refresh(self, key: str) -> None:
        """Recompute ``key``'s visible entry from confirmed + pending ops; emit the diff."""
        entry = self._confirmed.get(key)
        for op in self._pending.values():
            if op.item_id == key:
                entry = _Entry(op.item, op.created_at) if op.item is not None else None
        before = self._view.get(key)
        if entry is None:
            self._view.pop(key, None)
        else:
            self._view[key] = entry
        if before == entry:
            return
        self._sorted = None
        if before is None and entry is not None:
            self._events.append(Created(entry.item))
        elif before is not None and entry is None:
            self._events.append(Deleted(key, before.item))
        elif before is not None and entry is not None and before.item != entry.item:
            self._events.append(Updated(entry.item, before.item))
        # Else only createdAt changed (delete + re-create): the order moved, no item event.

    def _handle_history(self, frame: Mapping[str, Any]) -> None:
        events = frame.get("data") or []
        if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
            raise StoreError("history 'data' must be a list of message frames")
        state = frame.get("state")
        if state is not None:
            # Sent when asked for (subscribe with ``state``) or when the gap was too old.
            if not isinstance(state, Mapping):
                raise StoreError("history 'state' must map item ids to message frames")
            offset = frame.get("offset")
            epoch = frame.get("epoch")
            self.load_snapshot(
                state,
                offset=offset if isinstance(offset, int) and not isinstance(offset, bool) else None,
                epoch=epoch if isinstance(epoch, str) else None,
            )
        elif frame.get("recovered") is False:
            raise StoreError("history with recovered=false needs a 'state' snapshot")
        for event in sorted(events, key=lambda e: e.get("offset") or 0):
            self.on_message(event)
