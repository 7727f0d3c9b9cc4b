"""A realtime key -> value dict shared on one channel, with per-key conflict policies.

:class:`SharedStateCore` is the sans-I/O heart of :class:`rtwidgets.SharedState` and
:func:`rtwidgets.share`. It builds on :class:`~rtwidgets.core.reconcile.StateReconciler`
(confirmed vs visible state, pending operations with ``msgId``, delta and snapshot ``sync``)
and adds what a shared dict needs on top: *which* offline change conflicts, and what to do.

Rules of this module:

* Wire format: one keyed ``publish`` per change (``key`` = the dict key, ``data`` =
  ``{"v": value}``; ``data: null`` deletes the key), so the channel's keyed state *is* the
  dict and a late joiner's ``sync`` snapshot carries it whole.
* While the channel is not live (:meth:`SharedStateCore.go_offline`), changes apply locally at
  once and wait; nothing is sent. After every (re)connect the I/O layer sends
  :meth:`SharedStateCore.sync_request` and feeds the ``sync_response`` to
  :meth:`SharedStateCore.on_sync_response`, which decides each waiting change:
  a change to key ``k`` **conflicts** when someone else changed ``k`` after the version
  the change was made on (a delta event, or the snapshot's frame for ``k``, newer than that
  version and not carrying one of our ``msgId``\\s). Then, per policy:
  ``"client-wins"``: ours is sent and stored last; ``"server-wins"``: ours is dropped (rolled
  back exactly, reported in :attr:`SharedStateCore.dropped`); merge (a callable
  ``merge(key, theirs, ours) -> value``): the merged value replaces ours and is sent.
  Non-conflicting changes are always sent.
* Live: changes are sent at once; echoes and other participants' changes arrive as
  ``message`` frames (:meth:`SharedStateCore.on_message`); a refusal rolls the change back
  (:meth:`SharedStateCore.on_refused`). A change refused for the rate (``rate_limited``) is not a
  refusal of the value: it stays pending and :meth:`SharedStateCore.resend_rate_limited` sends it
  again when the gateway said it may — unless a newer change of the same key superseded it
  (then it is dropped: the newer one carries the key's value).
* Values must be JSON-serialisable (checked by the caller with the protocol's encoder);
  the core treats them as opaque.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from rtwidgets.core.reconcile import ReconciliationConfig, StateReconciler

__all__ = ["MergeFunction", "SharedStateCore", "apply_shared_event"]

MergeFunction = Callable[[str, Any, Any], Any]
_POLICIES = ("client-wins", "server-wins")
_MINE_KEPT = 10_000  # msgIds of ours remembered (to tell our changes from others')


def apply_shared_event(state: dict[str, Any], frame: dict[str, Any]) -> dict[str, Any]:
    """Pure: the dict after one keyed message (``{"v": value}`` sets, ``null`` deletes)."""
    key = frame.get("key")
    if not isinstance(key, str):
        return state  # not a shared-state change (e.g. a chat line on the same channel)
    data = frame.get("data")
    new = dict(state)
    if data is None:
        new.pop(key, None)
    elif isinstance(data, dict) and "v" in data:
        new[key] = data["v"]
    else:
        return state
    return new


class SharedStateCore:
    """One channel's shared dict (see the module rules).

    Args:
        channel: the channel name.
        conflict: ``"client-wins"`` (default), ``"server-wins"``, or a merge function
            ``merge(key, theirs, ours) -> value``.
        new_id: fresh ``msgId`` strings (injectable for tests).

    Raises:
        ValueError: an unknown policy name.
    """

    def __init__(
        self,
        channel: str,
        conflict: str | MergeFunction = "client-wins",
        *,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        if callable(conflict):
            self.merge: MergeFunction | None = conflict
            self.policy = "merge"
        elif conflict in _POLICIES:
            self.merge, self.policy = None, str(conflict)
        else:
            raise ValueError(
                f"conflict must be 'client-wins', 'server-wins' or a merge function "
                f"merge(key, theirs, ours) -> value, got {conflict!r}"
            )
        kwargs: dict[str, Any] = {} if new_id is None else {"new_id": new_id}
        # The reconciler re-sends every pending change after a sync ('client-wins'); this core
        # decides per key before anything is sent.
        self._rec: StateReconciler[dict[str, Any]] = StateReconciler(
            channel, apply_shared_event, {}, ReconciliationConfig(conflict_resolution="client-wins"), **kwargs
        )
        self.channel = channel
        self._base: dict[str, int] = {}  # msgId -> version the change was made on
        self._mine: deque[str] = deque(maxlen=_MINE_KEPT)
        self._mine_set: set[str] = set()
        self._live = False
        self._out: list[dict[str, Any]] = []
        self.dropped: list[tuple[str, Any]] = []  # (key, value) of changes dropped by server-wins
        self.merged = 0
        self.conflicts = 0
        self._rate_limited: set[str] = set()
        # key -> newest offset of someone else's change seen live: after a reconnect the resumed
        # subscription may deliver their change before our sync, which then reports no delta.
        self._others_newest: dict[str, int] = {}

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> dict[str, Any]:
        """The visible dict: the server's, with our waiting changes on top."""
        return self._rec.state

    @property
    def confirmed(self) -> dict[str, Any]:
        return self._rec.confirmed_state

    @property
    def pending(self) -> int:
        return self._rec.pending_count

    @property
    def live(self) -> bool:
        return self._live

    @property
    def needs_sync(self) -> bool:
        """A gap or an epoch change was seen: send :meth:`sync_request`."""
        return self._rec.needs_sync and not self._rec.sync_in_flight

    # ------------------------------------------------------------------ inputs

    def set(self, key: str, value: Any, now: float) -> str:
        """Change ``key`` (visible at once); returns the change's ``msgId``.

        Raises:
            ValueError: ``key`` is not a non-empty string.
        """
        return self._change(key, {"v": value}, now)

    def delete(self, key: str, now: float) -> str:
        """Delete ``key``; returns the change's ``msgId``."""
        return self._change(key, None, now)

    def go_offline(self) -> None:
        """The channel is not live: changes wait for the next sync."""
        self._live = False

    def sync_request(self) -> dict[str, Any]:
        """The ``sync`` frame to send once (re)subscribed (or when :attr:`needs_sync`)."""
        self._live = False
        return self._rec.sync_request()

    def on_sync_response(self, frame: Mapping[str, Any]) -> None:
        """Apply the ``sync_response``; decide every waiting change; the channel is live again.

        Raises:
            ReconcileError: the frame is malformed or no sync is in flight.
        """
        waiting = {op.msg_id: op for op in self._rec.pending_operations}
        resend = self._rec.on_sync_response(frame)  # applies the delta or snapshot
        newer = self._others_changes(frame)
        for seen_key, offset in self._others_newest.items():
            newer[seen_key] = max(offset, newer.get(seen_key, 0))
        for out in resend:
            msg_id = out["msgId"]
            op = waiting.get(msg_id)
            key = out.get("key")
            theirs_offset = newer.get(key) if isinstance(key, str) else None
            if op is None or theirs_offset is None or theirs_offset <= self._base.get(msg_id, 0):
                self._emit(out)  # no conflict
                continue
            self.conflicts += 1
            if self.policy == "client-wins":
                self._emit(out)
            elif self.policy == "server-wins":
                self._rec.fail_operation(msg_id)  # exact rollback to the server's value
                self._base.pop(msg_id, None)
                self.dropped.append((str(key), _value_of(op.operation)))
            else:
                assert self.merge is not None and isinstance(key, str)
                theirs = self._rec.confirmed_state.get(key)
                value = self.merge(key, theirs, _value_of(op.operation))
                self._rec.fail_operation(msg_id)
                self._base.pop(msg_id, None)
                self.merged += 1
                self._change(key, {"v": value}, op.timestamp, live=True)
        self._live = True

    def on_message(self, frame: Mapping[str, Any]) -> None:
        """A live ``message`` frame of the channel (ours or someone else's)."""
        if frame.get("type") != "message" or not isinstance(frame.get("offset"), int):
            return  # ephemeral frames carry no shared state
        msg_id = frame.get("msgId")
        key, offset = frame.get("key"), frame.get("offset")
        if isinstance(key, str) and isinstance(offset, int) and msg_id not in self._mine_set:
            self._others_newest[key] = max(offset, self._others_newest.get(key, 0))
        self._rec.on_message(frame)
        if isinstance(msg_id, str):
            self._base.pop(msg_id, None)

    def on_rate_limited(self, msg_id: str) -> None:
        """The gateway refused change ``msg_id`` for the rate only: keep it for a resend."""
        self._rate_limited.add(msg_id)

    def resend_rate_limited(self) -> None:
        """Queue the rate-limited changes again (see :meth:`data_to_send`), newest per key only."""
        waiting = self._rec.pending_operations
        newest: dict[str | None, str] = {op.key: op.msg_id for op in waiting}
        retry, self._rate_limited = self._rate_limited, set()
        for op in waiting:
            if op.msg_id not in retry:
                continue
            if newest.get(op.key) != op.msg_id:
                self._rec.fail_operation(op.msg_id)  # superseded: the newer change wins anyway
                self._base.pop(op.msg_id, None)
            elif self._live:
                self._emit(self._publish_frame(op.msg_id, op.key, op.operation))
            # offline: the next sync re-sends it

    def on_refused(self, msg_id: str) -> bool:
        """The gateway refused change ``msg_id``: roll it back. False if it was not waiting."""
        self._base.pop(msg_id, None)
        return self._rec.fail_operation(msg_id)

    # ------------------------------------------------------------------ outputs

    def data_to_send(self) -> list[dict[str, Any]]:
        """``publish`` frames to send now (each with ``msgId``; send with an ack)."""
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ internals

    def _change(self, key: str, data: dict[str, Any] | None, now: float, *, live: bool | None = None) -> str:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a shared state key must be a non-empty string, got {key!r}")
        frame = self._rec.perform_operation(data, now, key=key)
        msg_id: str = frame["msgId"]
        self._base[msg_id] = self._rec.version
        if msg_id not in self._mine_set:
            if len(self._mine) == self._mine.maxlen:
                self._mine_set.discard(self._mine[0])
            self._mine.append(msg_id)
            self._mine_set.add(msg_id)
        if self._live if live is None else live:
            self._emit(frame)
        return msg_id

    def _publish_frame(self, msg_id: str, key: str | None, data: Any) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "publish", "channel": self.channel, "data": data, "msgId": msg_id}
        if key is not None:
            frame["key"] = key
        return frame

    def _emit(self, frame: dict[str, Any]) -> None:
        frame = dict(frame)
        frame.pop("_id", None)  # the I/O layer's request id, not the reconciler's
        self._out.append(frame)

    def _others_changes(self, frame: Mapping[str, Any]) -> dict[str, int]:
        """key -> newest offset of a change by someone else, from a ``sync_response``."""
        newest: dict[str, int] = {}
        frames: list[Any] = list(frame.get("events") or [])
        state = frame.get("state")
        if isinstance(state, Mapping):
            frames.extend(state.values())
        for f in frames:
            if not isinstance(f, Mapping):
                continue
            key, offset, msg_id = f.get("key"), f.get("offset"), f.get("msgId")
            if not isinstance(key, str) or not isinstance(offset, int) or msg_id in self._mine_set:
                continue
            newest[key] = max(offset, newest.get(key, 0))
        return newest


def _value_of(operation: Any) -> Any:
    return operation.get("v") if isinstance(operation, dict) else None
