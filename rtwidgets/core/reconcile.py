"""State reconciliation after disconnects: a sans-I/O ``StateReconciler``.

This is the design's ``StateReconciler`` (docs/design.md#reconciliation) made
real. Rules of this module:

* No I/O, no asyncio, no clock reads: the caller passes ``now`` and feeds server frames in;
  methods return the frames to send. Operation ids come from an injectable ``new_id``.
* Two states are kept. The **confirmed** state is exactly the server's channel state at
  ``version`` (the offset of the last applied server event): server events are applied
  only in offset order, without gaps, so it never drifts. The **visible** state is the
  confirmed state with the still-pending local operations re-applied on top, in the order
  they were performed. Rollback of a refused operation is therefore exact: the visible
  state is recomputed from the confirmed state and the remaining pending operations (the
  design's reconciler had no rollback at all).
* Own operations are recognised by ``msgId``: every publish carries a fresh ``msgId`` and
  retries reuse it, so the server de-duplicates them and the echoed event confirms them.
* ``sync`` requests are correlated with their ``sync_response`` by channel (the design's
  "simplified" request promise never resolved).

``apply_event(state, event) -> state`` must be pure (return a new state, never mutate its
input): the reconciler re-applies pending operations to older states when it rebases.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from rtwidgets.core._compat import deprecated_alias
from rtwidgets.errors import ReconcileError  # defined there; re-exported from here

__all__ = [
    "ConflictResolution",
    "PendingOperation",
    "ReconcileError",
    "ReconciliationConfig",
    "StateReconciler",
]

S = TypeVar("S")

ConflictResolution = Literal["server-wins", "client-wins", "merge"]
_POLICIES: frozenset[str] = frozenset({"server-wins", "client-wins", "merge"})


@dataclass(frozen=True)
class ReconciliationConfig:
    """How a snapshot (history gap too old for a delta) is merged with local work.

    ``max_delta_events``: sent to the server as ``maxEvents`` in the ``sync`` request: a
    delta longer than this should be answered with a snapshot instead.
    ``conflict_resolution``:

    * ``'client-wins'`` (default): the snapshot becomes the confirmed state and pending
      local operations are re-applied on top and re-sent (the design's behaviour).
    * ``'server-wins'``: the snapshot wins; pending operations the server has not stored
      are dropped (not re-sent) and listed by :meth:`StateReconciler.dropped`.
    * ``'merge'``: ``on_conflict(server_state, client_confirmed_state)`` gives the new
      confirmed state; pending operations are then re-applied on top and re-sent. The
      client's *confirmed* state is passed (not the optimistic one, as in the design) so
      pending operations are not applied twice.
    """

    max_delta_events: int = 1000
    conflict_resolution: ConflictResolution = "client-wins"
    on_conflict: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_delta_events, bool) or not isinstance(self.max_delta_events, int):
            raise TypeError("max_delta_events must be an int")
        if self.max_delta_events < 1:
            raise ValueError(f"max_delta_events must be >= 1, got {self.max_delta_events}")
        if self.conflict_resolution not in _POLICIES:
            raise ValueError(
                f"conflict_resolution must be one of {sorted(_POLICIES)}, got {self.conflict_resolution!r}"
            )
        if self.conflict_resolution == "merge" and self.on_conflict is None:
            raise ValueError("conflict_resolution='merge' needs an on_conflict(server_state, client_state)")


@dataclass(frozen=True)
class PendingOperation:
    """A local operation not yet confirmed by a server event."""

    msg_id: str
    operation: Any
    key: str | None
    timestamp: float

    def as_event(self, channel: str) -> dict[str, Any]:
        """The synthetic ``message`` frame used to apply the operation optimistically."""
        event: dict[str, Any] = {
            "type": "message",
            "id": self.msg_id,
            "eventId": self.msg_id,
            "msgId": self.msg_id,
            "channel": channel,
            "data": self.operation,
            "timestamp": self.timestamp,
            "offset": None,
            "optimistic": True,
        }
        if self.key is not None:
            event["key"] = self.key
        return event


def _default_id() -> str:
    return uuid.uuid4().hex


def _offset_of(frame: Mapping[str, Any]) -> int:
    offset = frame.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 1:
        raise ReconcileError(f"server event has no positive integer 'offset': {offset!r}")
    return offset


class StateReconciler(Generic[S]):
    """Keeps one channel's state consistent with the server across disconnects.

    Caller obligations: send what :meth:`sync_request` and :meth:`perform_operation`
    return; after every (re)connect send a ``sync_request`` and feed the
    ``sync_response`` to :meth:`on_sync_response`, then send the frames it returns;
    feed live ``message`` frames of the channel to :meth:`on_message`; when the
    server refuses an operation (``error`` whose ``id`` is the op's ``msgId``) call
    :meth:`fail_operation`. When :attr:`needs_sync` turns True (a gap or an epoch change
    was seen), send a ``sync_request``.

    ``from_snapshot(state_frames)`` turns a snapshot's keyed state (key -> latest message
    frame) into a state; by default the frames are folded with ``apply_event`` in offset
    order onto ``initial_state``, which is right when each key's latest event alone
    determines that key's part of the state (publish with ``key``).
    ``on_state(state)`` is called whenever the visible state changes (the design's
    ``setState``).
    """

    def __init__(
        self,
        channel: str,
        apply_event: Callable[[S, dict[str, Any]], S],
        initial_state: S,
        config: ReconciliationConfig | None = None,
        *,
        from_snapshot: Callable[[dict[str, dict[str, Any]]], S] | None = None,
        on_state: Callable[[S], None] | None = None,
        new_id: Callable[[], str] = _default_id,
    ) -> None:
        if not isinstance(channel, str) or not channel:
            raise ValueError("channel must be a non-empty string")
        self.channel = channel
        self.config = config or ReconciliationConfig()
        self._apply = apply_event
        self._initial = initial_state
        self._from_snapshot = from_snapshot
        self._on_state = on_state
        self._new_id = new_id
        self._confirmed: S = initial_state
        self._visible: S = initial_state
        self._pending: dict[str, PendingOperation] = {}  # insertion order = performed order
        self._last_event_id: str | None = None
        self._version = 0
        self._epoch: str | None = None
        self._sync_in_flight = False
        self._needs_sync = True  # nothing known yet: the first sync fetches the state
        self._dropped: list[str] = []

    # ----------------------------------------------------------------- accessors
    @property
    def state(self) -> S:
        """The visible state: confirmed server state plus pending local operations."""
        return self._visible

    @property
    def confirmed_state(self) -> S:
        """The server's state at :attr:`version`, without local pending operations."""
        return self._confirmed

    @property
    def last_event_id(self) -> str | None:
        return self._last_event_id

    @property
    def version(self) -> int:
        """Offset of the last server event applied (0: none)."""
        return self._version

    @property
    def epoch(self) -> str | None:
        return self._epoch

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def pending_operations(self) -> list[PendingOperation]:
        """Pending operations in the order they were performed."""
        return list(self._pending.values())

    @property
    def needs_sync(self) -> bool:
        """True when the confirmed state cannot advance without a ``sync`` round trip."""
        return self._needs_sync

    @property
    def sync_in_flight(self) -> bool:
        return self._sync_in_flight

    def dropped(self) -> list[str]:
        """Ids of pending operations dropped by a ``'server-wins'`` snapshot since last call."""
        dropped, self._dropped = self._dropped, []
        return dropped

    drain_dropped = deprecated_alias("drain_dropped", dropped)

    # ----------------------------------------------------------- local operations
    def perform_operation(self, operation: Any, now: float, *, key: str | None = None) -> dict[str, Any]:
        """Apply ``operation`` optimistically and return the ``publish`` frame to send.

        The frame carries a fresh ``msgId`` (also used as ``_id`` so an ``ack``/``error``
        correlates); keep it until the operation is confirmed or refused.
        """
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError("key must be a non-empty string or None")
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ValueError(f"now must be a finite number, got {now!r}")
        msg_id = self._new_id()
        if not isinstance(msg_id, str) or not msg_id or msg_id in self._pending:
            raise ValueError(f"new_id must return a fresh non-empty string, got {msg_id!r}")
        op = PendingOperation(msg_id=msg_id, operation=operation, key=key, timestamp=now)
        # Apply first: if apply_event rejects the operation, nothing is left pending.
        visible = self._apply(self._visible, op.as_event(self.channel))
        self._pending[msg_id] = op
        self._set_visible(visible)
        return self._publish_frame(op)

    def fail_operation(self, msg_id: str) -> bool:
        """The server refused operation ``msg_id``: roll it back exactly.

        Returns False if no such operation is pending (already confirmed or refused).
        """
        if self._pending.pop(msg_id, None) is None:
            return False
        self._recompute()
        return True

    # --------------------------------------------------------------- server input
    def on_message(self, frame: Mapping[str, Any]) -> bool:
        """Apply one live ``message`` frame of this channel. Returns True if applied.

        Events already applied (offset <= version) are ignored. An event after a gap, or
        from another epoch, is not applied: :attr:`needs_sync` turns True and the
        following ``sync`` fetches what was missed (the confirmed state must never skip
        an event).
        """
        self._check_message(frame)
        offset = _offset_of(frame)
        epoch = frame.get("epoch")
        if self._epoch is not None and epoch is not None and epoch != self._epoch:
            self._needs_sync = True
            return False
        if offset <= self._version:
            return False
        if offset != self._version + 1:
            self._needs_sync = True
            return False
        self._apply_confirmed(frame)
        if epoch is not None:
            self._epoch = epoch
        self._recompute()
        return True

    handle_server_event = deprecated_alias("handle_server_event", on_message)

    def sync_request(self, channel: str | None = None) -> dict[str, Any]:
        """The ``sync`` frame to send after (re)connecting; marks a sync as in flight."""
        if channel is not None and channel != self.channel:
            raise ValueError(f"this reconciler handles {self.channel!r}, not {channel!r}")
        self._sync_in_flight = True
        frame: dict[str, Any] = {
            "type": "sync",
            "channel": self.channel,
            "version": self._version,
            "pendingOps": list(self._pending),
            "maxEvents": self.config.max_delta_events,
        }
        # Absent rather than null: the protocol validates these as optional strings.
        if self._last_event_id is not None:
            frame["lastEventId"] = self._last_event_id
        if self._epoch is not None:
            frame["epoch"] = self._epoch
        return frame

    def on_sync_response(self, frame: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Apply a ``sync_response``; return the ``publish`` frames to re-send.

        Delta: events after :attr:`version` are applied in offset order (own operations
        among them are confirmed). Snapshot: merged per the conflict policy. Operations in
        ``confirmedOps`` are no longer pending. Re-sent frames reuse each operation's
        ``msgId`` so the server stores each operation at most once.
        """
        if not isinstance(frame, Mapping) or frame.get("type") != "sync_response":
            got = frame.get("type") if isinstance(frame, Mapping) else type(frame).__name__
            raise ReconcileError(f"expected a 'sync_response' frame, got {got!r}")
        if frame.get("channel") != self.channel:
            raise ReconcileError(
                f"sync_response for channel {frame.get('channel')!r} handed to reconciler of {self.channel!r}"
            )
        if not self._sync_in_flight:
            raise ReconcileError(f"unexpected sync_response for {self.channel!r}: no sync request in flight")
        sync_type = frame.get("syncType")
        version = frame.get("version")
        epoch = frame.get("epoch")
        events = frame.get("events") or []
        confirmed_ops = frame.get("confirmedOps") or []
        if sync_type not in ("delta", "snapshot"):
            raise ReconcileError(f"sync_response 'syncType' must be 'delta' or 'snapshot', got {sync_type!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ReconcileError(f"sync_response 'version' must be an integer >= 0, got {version!r}")
        if epoch is not None and not isinstance(epoch, str):
            raise ReconcileError("sync_response 'epoch' must be a string")
        if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
            raise ReconcileError("sync_response 'events' must be a list of message frames")
        if not isinstance(confirmed_ops, list) or not all(isinstance(o, str) for o in confirmed_ops):
            raise ReconcileError("sync_response 'confirmedOps' must be a list of strings")

        if sync_type == "delta":
            self._apply_delta(events, version, epoch, frame.get("latestEventId"))
        else:
            self._apply_snapshot(frame, events, version, epoch)
        for msg_id in confirmed_ops:
            # Stored by the server, so its effect is in the confirmed state already.
            self._pending.pop(msg_id, None)
        if sync_type == "snapshot" and self.config.conflict_resolution == "server-wins":
            self._dropped.extend(self._pending)
            self._pending.clear()
        self._sync_in_flight = False
        self._recompute()
        return [self._publish_frame(op) for op in self._pending.values()]

    handle_sync_response = deprecated_alias("handle_sync_response", on_sync_response)

    # ---------------------------------------------------------------- internals
    def _publish_frame(self, op: PendingOperation) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "publish",
            "channel": self.channel,
            "data": op.operation,
            "msgId": op.msg_id,
            "_id": op.msg_id,
        }
        if op.key is not None:
            frame["key"] = op.key
        return frame

    def _check_message(self, frame: Mapping[str, Any]) -> None:
        if not isinstance(frame, Mapping) or frame.get("type") != "message":
            got = frame.get("type") if isinstance(frame, Mapping) else type(frame).__name__
            raise ReconcileError(f"expected a 'message' frame, got {got!r}")
        if frame.get("channel") not in (None, self.channel):
            raise ReconcileError(
                f"message for channel {frame.get('channel')!r} handed to reconciler of {self.channel!r}"
            )

    def _apply_confirmed(self, frame: Mapping[str, Any]) -> None:
        """Apply one in-order server event to the confirmed state."""
        event = dict(frame)
        self._confirmed = self._apply(self._confirmed, event)
        self._version = event["offset"]
        event_id = event.get("eventId", event.get("id"))
        if isinstance(event_id, str):
            self._last_event_id = event_id
        msg_id = event.get("msgId")
        if isinstance(msg_id, str):
            # Our own operation came back: it is part of the server state now.
            self._pending.pop(msg_id, None)

    def _apply_delta(
        self, events: list[Mapping[str, Any]], version: int, epoch: str | None, latest_event_id: Any
    ) -> None:
        if self._epoch is not None and epoch is not None and epoch != self._epoch:
            raise ReconcileError(
                f"delta sync_response from epoch {epoch!r} but the local state is from epoch {self._epoch!r}"
            )
        for event in events:
            self._check_message(event)
        ordered = sorted(events, key=_offset_of)
        for event in ordered:
            offset = _offset_of(event)
            if offset <= self._version:
                continue  # already applied from a live event
            if offset != self._version + 1:
                raise ReconcileError(
                    f"delta sync_response skips offsets {self._version + 1}..{offset - 1}: events were lost"
                )
            self._apply_confirmed(event)
        if version > self._version:
            raise ReconcileError(
                f"delta sync_response claims version {version} but its events end at {self._version}"
            )
        if epoch is not None:
            self._epoch = epoch
        if version == self._version and isinstance(latest_event_id, str):
            self._last_event_id = latest_event_id
        self._needs_sync = False

    def _apply_snapshot(
        self, frame: Mapping[str, Any], events: list[Mapping[str, Any]], version: int, epoch: str | None
    ) -> None:
        state_frames = frame.get("state") or {}
        if not isinstance(state_frames, Mapping) or not all(
            isinstance(v, Mapping) for v in state_frames.values()
        ):
            raise ReconcileError("snapshot sync_response 'state' must map keys to message frames")
        same_epoch = epoch is not None and epoch == self._epoch
        if same_epoch and version < self._version:
            # Live events already took us past this snapshot: ours is newer and gap-free.
            self._needs_sync = False
            return
        server_state = self._state_from_snapshot({str(k): dict(v) for k, v in state_frames.items()})
        if self.config.conflict_resolution == "merge":
            assert self.config.on_conflict is not None  # guaranteed by ReconciliationConfig
            server_state = self.config.on_conflict(server_state, self._confirmed)
        self._confirmed = server_state
        self._version = version
        self._epoch = epoch
        latest = frame.get("latestEventId")
        self._last_event_id = latest if isinstance(latest, str) else None
        # Own operations among the snapshot's recent events are part of its state.
        for event in events:
            msg_id = event.get("msgId")
            offset = event.get("offset")
            if isinstance(msg_id, str) and isinstance(offset, int) and offset <= version:
                self._pending.pop(msg_id, None)
        self._needs_sync = False

    def _state_from_snapshot(self, state_frames: dict[str, dict[str, Any]]) -> S:
        if self._from_snapshot is not None:
            return self._from_snapshot(state_frames)
        state = self._initial
        for event in sorted(state_frames.values(), key=lambda f: f.get("offset") or 0):
            state = self._apply(state, event)
        return state

    def _recompute(self) -> None:
        state = self._confirmed
        for op in self._pending.values():
            state = self._apply(state, op.as_event(self.channel))
        self._set_visible(state)

    def _set_visible(self, state: S) -> None:
        changed = state is not self._visible and state != self._visible
        self._visible = state
        if changed and self._on_state is not None:
            self._on_state(state)
