"""In-process broker: history, keyed state, de-duplication and presence in dicts.

The embedded default for a single gateway (a notebook, tests, one server). Nothing
survives the process: a new ``MemoryBroker`` starts every channel at a fresh epoch,
so clients resuming with an old epoch are told ``recovered: false`` and rebuild from
the snapshot. All methods finish without awaiting anything, so each one is atomic on
the event loop; fan-out is a synchronous call of the gateway's listener.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from itertools import islice
from typing import Any

from rtwidgets.protocol import encode_bytes

# StateFull lives in .base (shared by every broker); re-exported here for older imports.
from .base import Broker, SnapshotResult, StateFull

__all__ = ["MemoryBroker", "StateFull"]


class _Channel:
    """Everything the broker keeps for one channel."""

    __slots__ = ("epoch", "history", "msg_ids", "offset", "presence", "state")

    def __init__(self, epoch: str, history_size: int) -> None:
        self.epoch = epoch
        self.offset = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)
        self.state: dict[str, dict[str, Any]] = {}
        self.msg_ids: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.presence: dict[str, dict[str, Any]] = {}


def _parse_event_id(value: str) -> int | None:
    # Event ids are decimal offsets; anything else (another broker's ids) is not resumable.
    if not value.isascii() or not value.isdigit():
        return None
    return int(value)


class MemoryBroker(Broker):
    """A :class:`~.base.Broker` kept in this process.

    Args:
        history_size: stored messages retained per channel.
        state_max_keys: keys of keyed state per channel; more raise :class:`StateFull`.
        dedupe_window: msgIds remembered per channel (default ``history_size``).
        clock: wall clock in seconds (``timestamp`` fields are ms of it).
        new_epoch: epoch factory (default random uuid4 hex).
    """

    def __init__(
        self,
        history_size: int = 1000,
        *,
        state_max_keys: int = 10000,
        dedupe_window: int | None = None,
        clock: Callable[[], float] = time.time,
        new_epoch: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        super().__init__()
        if history_size <= 0 or state_max_keys <= 0:
            raise ValueError("history_size and state_max_keys must be positive")
        self.history_size = history_size
        self.state_max_keys = state_max_keys
        self.dedupe_window = dedupe_window if dedupe_window is not None else history_size
        if self.dedupe_window <= 0:
            raise ValueError("dedupe_window must be positive")
        self._clock = clock
        self._new_epoch = new_epoch
        self._channels: dict[str, _Channel] = {}
        self._attached: set[str] = set()
        self._closed = False

    def _channel(self, name: str) -> _Channel:
        ch = self._channels.get(name)
        if ch is None:
            ch = self._channels[name] = _Channel(self._new_epoch(), self.history_size)
        return ch

    async def start(self) -> None:
        """Nothing to connect; re-opens a closed broker (its data is kept)."""
        self._closed = False

    async def close(self) -> None:
        """Stop delivering; stored data stays readable. Idempotent."""
        self._closed = True
        self._attached.clear()

    async def attach(self, channel: str) -> None:
        self._attached.add(channel)

    async def detach(self, channel: str) -> None:
        self._attached.discard(channel)

    def _fan_out(self, channel: str, frame: dict[str, Any]) -> None:
        if channel in self._attached and not self._closed:
            self.deliver(channel, frame, encode_bytes(frame))

    async def publish(
        self, channel: str, frame: dict[str, Any], *, key: str | None = None, msg_id: str | None = None
    ) -> dict[str, Any]:
        ch = self._channel(channel)
        if msg_id is not None:
            earlier = ch.msg_ids.get(msg_id)
            if earlier is not None:
                return {**earlier, "duplicate": True}
        # Check the state bound before storing anything, so a refusal changes nothing.
        deleting = key is not None and frame.get("data") is None
        if key is not None and not deleting and key not in ch.state and len(ch.state) >= self.state_max_keys:
            raise StateFull(f"channel {channel!r} already holds {self.state_max_keys} state keys")
        ch.offset += 1
        out = dict(frame)
        event_id = str(ch.offset)
        out["id"] = event_id
        out["eventId"] = event_id
        out["offset"] = ch.offset
        out["epoch"] = ch.epoch
        out.setdefault("timestamp", int(self._clock() * 1000))
        ch.history.append(out)
        if key is not None:
            if deleting:
                ch.state.pop(key, None)
            else:
                ch.state[key] = out
        if msg_id is not None:
            ch.msg_ids[msg_id] = out
            if len(ch.msg_ids) > self.dedupe_window:
                ch.msg_ids.popitem(last=False)
        self._fan_out(channel, out)
        return out

    async def broadcast(self, channel: str, frame: dict[str, Any]) -> None:
        self._fan_out(channel, frame)

    async def snapshot(
        self,
        channel: str,
        *,
        last_event_id: str | None,
        epoch: str | None,
        history: int,
        want_state: bool,
    ) -> SnapshotResult:
        """Catch-up data; see :meth:`Broker.snapshot`.

        Raises:
            ValueError: ``history`` is negative.
        """
        if history < 0:
            raise ValueError(f"history must be >= 0, got {history}")
        ch = self._channel(channel)
        latest = str(ch.offset) if ch.offset else None
        recovered: bool | None = None
        events: list[dict[str, Any]]
        if last_event_id is not None:
            since = self._resume_point(ch, last_event_id, epoch)
            if since is not None:
                oldest = ch.history[0]["offset"] if ch.history else ch.offset + 1
                # Offsets in the deque are consecutive, so the start index is arithmetic.
                events = list(islice(ch.history, max(0, since - oldest + 1), None))
                recovered = True
            else:
                events = self._tail(ch, history, all_if_zero=True)
                recovered = False
        else:
            events = self._tail(ch, history, all_if_zero=False)
        state = dict(ch.state) if (want_state or recovered is False) else None
        return SnapshotResult(
            channel=channel,
            epoch=ch.epoch,
            offset=ch.offset,
            latest_event_id=latest,
            events=events,
            recovered=recovered,
            state=state,
        )

    @staticmethod
    def _resume_point(ch: _Channel, last_event_id: str, epoch: str | None) -> int | None:
        """The offset to resume after, or None when the gap cannot be filled."""
        if epoch is not None and epoch != ch.epoch:
            return None
        since = _parse_event_id(last_event_id)
        if since is None or since > ch.offset:
            return None  # unknown format, or an id from the future (another epoch)
        oldest = ch.history[0]["offset"] if ch.history else ch.offset + 1
        if since < oldest - 1:
            return None  # events after it were already evicted
        return since

    @staticmethod
    def _tail(ch: _Channel, count: int, *, all_if_zero: bool) -> list[dict[str, Any]]:
        if count <= 0:
            return list(ch.history) if all_if_zero else []
        if count >= len(ch.history):
            return list(ch.history)
        return list(islice(ch.history, len(ch.history) - count, None))

    async def presence_set(self, channel: str, member: dict[str, Any]) -> None:
        """Insert or replace ``member``; a replaced member keeps its place in join order.

        Raises:
            ValueError: ``member`` has no non-empty string ``clientId``.
        """
        client_id = member.get("clientId")
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("presence member needs a non-empty string 'clientId'")
        self._channel(channel).presence[client_id] = member

    async def presence_remove(self, channel: str, client_id: str) -> dict[str, Any] | None:
        ch = self._channels.get(channel)
        return None if ch is None else ch.presence.pop(client_id, None)

    async def presence_members(self, channel: str) -> list[dict[str, Any]]:
        ch = self._channels.get(channel)
        return [] if ch is None else list(ch.presence.values())

    def channel_count(self) -> int:
        """Channels holding any data (for stats)."""
        return len(self._channels)
