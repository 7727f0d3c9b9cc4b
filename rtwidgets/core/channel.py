"""Sans-I/O channel subscription state: resume position, exactly-once delivery, presence.

Rules of this module:

* A channel's stored messages carry ``(epoch, offset)``; offsets grow by one per stored message
  within an epoch. The core remembers the newest ``(epoch, offset, eventId)`` it delivered and
  **drops any message whose offset is <= that within the same epoch**. A resubscribe asks for
  everything after that ``eventId`` (``lastEventId`` + ``epoch``), so replays overlap at worst
  and each stored message is delivered at most once, in increasing offset order.
* Messages without an offset (``ephemeral`` publishes) are delivered as they come.
* While a subscribe is in flight, live messages are buffered until the ``ack`` (and, when
  catch-up was asked for, the ``history`` frame) arrived, then delivered after the replay, so
  history never lands after newer live messages.
* ``history`` with ``recovered: false`` (gap older than the retained history, or a new epoch)
  yields one :class:`Reset` carrying the gateway's keyed ``state`` and the recent events; the
  application rebuilds from it. Its events are *not* also reported as :class:`ChannelMessage`.
* Our own publishes get a per-channel FIFO ``seq`` (1, 2, 3, ...).
* A live stored message from another epoch than the channel's (its history was replaced, e.g.
  Redis restarted empty while we stayed connected) is never delivered as if nothing happened:
  :class:`EpochChanged` asks the I/O layer to send :meth:`ChannelCore.sync_frame`; live frames
  wait until the ``sync_response`` snapshot produced a :class:`Reset`, then follow it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rtwidgets.core.presence import PRESENCE_TYPES, PresenceCore, PresenceEvent

__all__ = [
    "ChannelCore",
    "ChannelEvent",
    "ChannelManager",
    "ChannelMessage",
    "ChannelOptions",
    "ChannelState",
    "Duplicate",
    "EpochChanged",
    "Gap",
    "Reset",
    "SubscriptionChanged",
    "SyncReceived",
    "apply_keyed",
    "frame_offset",
]


# ``history`` asked for on a resume that has no event id to resume after (protocol maximum).
RESUME_ALL_HISTORY = 1_000_000


class ChannelState(str, Enum):
    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBING = "unsubscribing"


@dataclass(frozen=True)
class ChannelOptions:
    """Subscribe options. ``history``: how many recent messages to receive on first subscribe;
    ``state``: also receive the channel's keyed state (latest frame per ``key``)."""

    presence: bool = False
    presence_data: dict[str, Any] | None = None
    history: int = 0
    state: bool = False

    def __post_init__(self) -> None:
        if self.history < 0:
            raise ValueError("history must be >= 0")
        if self.presence_data is not None and not isinstance(self.presence_data, dict):
            raise ValueError("presence_data must be a dict")


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ChannelMessage:
    """A message to deliver. ``replayed``: it came from a ``history``/``sync_response`` catch-up."""

    channel: str
    frame: dict[str, Any]
    replayed: bool = False

    @property
    def data(self) -> Any:
        return self.frame.get("data")


@dataclass(frozen=True)
class Duplicate:
    """A message dropped because its offset was already delivered (counted, not an error)."""

    channel: str
    frame: dict[str, Any]


@dataclass(frozen=True)
class Gap:
    """A message skipped offsets (``expected`` was next). Delivered anyway; a ``sync`` can
    fetch what is missing."""

    channel: str
    expected: int
    got: int


@dataclass(frozen=True)
class EpochChanged:
    """A live message came from a new epoch: the history we resumed from is gone. The I/O layer
    must send :meth:`ChannelCore.sync_frame` (its snapshot answer yields a :class:`Reset`), or call
    :meth:`ChannelCore.on_resync_failed` if that cannot be done. Live frames wait meanwhile."""

    channel: str
    previous: str
    current: str


@dataclass(frozen=True)
class Reset:
    """Continuity was lost: rebuild from ``state`` (key -> latest frame) and ``events``."""

    channel: str
    epoch: str | None
    offset: int | None
    latest_event_id: str | None
    events: tuple[dict[str, Any], ...]
    state: dict[str, Any] | None
    frame: dict[str, Any]


@dataclass(frozen=True)
class SubscriptionChanged:
    channel: str
    previous: ChannelState
    current: ChannelState


@dataclass(frozen=True)
class SyncReceived:
    """A ``sync_response`` was applied (its delta events were delivered as messages)."""

    channel: str
    frame: dict[str, Any]


ChannelEvent = (
    ChannelMessage
    | Duplicate
    | EpochChanged
    | Gap
    | Reset
    | SubscriptionChanged
    | SyncReceived
    | PresenceEvent
)


def _event_id(frame: dict[str, Any]) -> str | None:
    value = frame.get("eventId", frame.get("id"))
    return value if isinstance(value, str) else None


def frame_offset(frame: dict[str, Any]) -> int | None:
    """A frame's ``offset`` (None for ephemeral messages and frames without one)."""
    value = frame.get("offset")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_offset = frame_offset


def apply_keyed(state: dict[str, Any], frame: dict[str, Any]) -> None:
    """Apply a message to a keyed state (key -> latest frame; ``data: null`` deletes the key)."""
    key = frame.get("key")
    if not isinstance(key, str):
        return
    if frame.get("data") is None:
        state.pop(key, None)
    else:
        state[key] = frame


class ChannelCore:
    """One channel's subscription. Build frames with the ``*_frame`` methods, feed server
    frames to :meth:`on_frame` and subscribe acks to :meth:`on_subscribe_ack`."""

    def __init__(self, name: str, options: ChannelOptions | None = None) -> None:
        self.name = name
        self.options = options or ChannelOptions()
        self.presence = PresenceCore(name)
        self.presence_data: dict[str, Any] | None = self.options.presence_data
        self._state = ChannelState.UNSUBSCRIBED
        self.epoch: str | None = None
        self.last_offset: int | None = None
        self.last_event_id: str | None = None
        self.server_offset: int | None = None  # newest offset the gateway reported (ack/history)
        self.keyed_state: dict[str, Any] | None = {} if self.options.state else None
        self._seq = 0
        self._buffer: list[dict[str, Any]] = []
        self._buffering = False
        self._acked = False
        self._awaiting_history = False
        self._resuming = False
        self._resyncing = False  # an EpochChanged is waiting for its sync_response
        self.delivered = 0
        self.duplicates = 0
        self.gaps = 0
        self.resets = 0

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> ChannelState:
        return self._state

    def _set_state(self, state: ChannelState, events: list[ChannelEvent]) -> None:
        if state is not self._state:
            previous, self._state = self._state, state
            events.append(SubscriptionChanged(self.name, previous, state))

    def set_presence(self, presence: bool, data: dict[str, Any] | None) -> None:
        """Change what (re)subscribes ask for presence (several subscribers' union); the I/O
        layer sends the re-subscribe or ``presence_update`` that applies it now."""
        self.options = ChannelOptions(
            presence=presence, presence_data=data, history=self.options.history, state=self.options.state
        )
        self.presence_data = data if presence else None

    # ------------------------------------------------------------------ frames out

    def subscribe_frame(self) -> tuple[dict[str, Any], list[ChannelEvent]]:
        """The (re)subscribe frame; resumes after the last delivered event when there is one."""
        options: dict[str, Any] = {}
        if self.options.presence:
            options["presence"] = True
            if self.presence_data is not None:
                options["presenceData"] = self.presence_data
        if self.options.history:
            options["history"] = self.options.history
        if self.options.state:
            options["state"] = True
        self._resuming = self.last_event_id is not None
        if self._resuming:
            options["lastEventId"] = self.last_event_id
            if self.epoch is not None:
                options["epoch"] = self.epoch
        elif self.last_offset == 0:
            # We joined an empty channel and have received nothing since: there is no event id to
            # resume after, so ask for all retained history (every stored event is newer than us).
            options["history"] = RESUME_ALL_HISTORY
            self._resuming = True
        self._buffer.clear()
        self._resyncing = False
        self._buffering = True
        self._acked = False
        self._awaiting_history = self._resuming or self.options.history > 0
        events: list[ChannelEvent] = []
        self._set_state(ChannelState.SUBSCRIBING, events)
        return {"type": "subscribe", "channel": self.name, "options": options}, events

    def unsubscribe_frame(self) -> tuple[dict[str, Any], list[ChannelEvent]]:
        events: list[ChannelEvent] = []
        self._set_state(ChannelState.UNSUBSCRIBING, events)
        return {"type": "unsubscribe", "channel": self.name}, events

    def publish_frame(
        self, data: Any, *, key: str | None = None, ephemeral: bool = False, msg_id: str | None = None
    ) -> dict[str, Any]:
        """A ``publish`` frame with the next FIFO ``seq``."""
        self._seq += 1
        frame: dict[str, Any] = {"type": "publish", "channel": self.name, "data": data, "seq": self._seq}
        if key is not None:
            frame["key"] = key
        if ephemeral:
            frame["ephemeral"] = True
        if msg_id is not None:
            frame["msgId"] = msg_id
        return frame

    def presence_update_frame(self, data: dict[str, Any]) -> dict[str, Any]:
        """A ``presence_update``; the data is remembered and re-sent on resubscribe."""
        if not self.options.presence:
            raise ValueError(
                f"presence is not enabled for channel {self.name!r} (subscribe with presence=True)"
            )
        if not isinstance(data, dict):
            raise ValueError("presence data must be a dict")
        self.presence_data = data
        return {"type": "presence_update", "channel": self.name, "data": data}

    def sync_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "sync", "channel": self.name}
        if self.last_event_id is not None:
            frame["lastEventId"] = self.last_event_id
        if self.epoch is not None:
            frame["epoch"] = self.epoch
        return frame

    # ------------------------------------------------------------------ inputs

    def on_subscribe_ack(self, frame: dict[str, Any]) -> list[ChannelEvent]:
        """The gateway acked our subscribe (ack may carry ``epoch``, ``offset``, ``latestEventId``)."""
        events: list[ChannelEvent] = []
        self._acked = True
        epoch, offset = frame.get("epoch"), _offset(frame)
        if offset is not None:
            self.server_offset = offset
        if self._awaiting_history and offset is not None:
            same_epoch = epoch is None or epoch == self.epoch
            # Nothing stored after what we already have: no catch-up can be missing.
            if offset == 0 or (same_epoch and self.last_offset is not None and offset <= self.last_offset):
                self._awaiting_history = False
        if self.last_offset is None and offset is not None and isinstance(epoch, str):
            # First position: the gateway's snapshot point. Later live frames are newer (the gateway
            # skips held frames the snapshot covers), and a resubscribe resumes from here.
            self.epoch = epoch
            self.last_offset = offset
            latest = frame.get("latestEventId")
            if isinstance(latest, str):
                self.last_event_id = latest
        elif self.epoch is None and isinstance(epoch, str):
            self.epoch = epoch
        self._set_state(ChannelState.SUBSCRIBED, events)
        if not self._awaiting_history:
            self._flush_buffer(events)
        return events

    def on_subscribe_failed(self) -> list[ChannelEvent]:
        events: list[ChannelEvent] = []
        self._buffer.clear()
        self._resyncing = False
        self._buffering = False
        self._set_state(ChannelState.UNSUBSCRIBED, events)
        return events

    def on_unsubscribed(self) -> list[ChannelEvent]:
        """The channel is gone (acked unsubscribe, or dropped locally)."""
        events = self.on_subscribe_failed()
        self.presence.clear()
        return events

    def on_connection_lost(self) -> list[ChannelEvent]:
        """The socket dropped: an active subscription must be re-established (state SUBSCRIBING).

        Members are kept (stale) until the resubscribe's ``presence_sync`` replaces them, so a
        UI does not flicker through an empty room on every reconnect."""
        events: list[ChannelEvent] = []
        self._buffer.clear()
        self._resyncing = False
        # A subscribe still queued was built for this position: its live frames must again wait
        # for its ack/catch-up. (A fresh subscribe_frame() resets all of this anyway.)
        self._buffering = self._state in (ChannelState.SUBSCRIBED, ChannelState.SUBSCRIBING)
        if self._state in (ChannelState.SUBSCRIBED, ChannelState.SUBSCRIBING):
            self._set_state(ChannelState.SUBSCRIBING, events)
        elif self._state is ChannelState.UNSUBSCRIBING:
            # The new connection never subscribed: the unsubscribe is complete.
            self.presence.clear()
            self._set_state(ChannelState.UNSUBSCRIBED, events)
        return events

    def on_frame(self, frame: dict[str, Any]) -> list[ChannelEvent]:
        """Apply one server frame addressed to this channel."""
        ftype = frame.get("type")
        events: list[ChannelEvent] = []
        if ftype == "message":
            if self._state in (ChannelState.UNSUBSCRIBED, ChannelState.UNSUBSCRIBING):
                return events  # late frames after we left: not for the application
            if self._buffering:
                self._buffer.append(frame)
            elif self._epoch_changed(frame):
                self._resyncing = self._buffering = True
                self._buffer.append(frame)
                events.append(EpochChanged(self.name, str(self.epoch), frame["epoch"]))
            else:
                self._deliver(frame, events, replayed=False)
        elif ftype == "history":
            self._on_history(frame, events)
        elif ftype == "sync_response":
            self._on_sync_response(frame, events)
        elif ftype in PRESENCE_TYPES:
            events.extend(self.presence.on_frame(frame))
        return events

    @property
    def awaiting_history(self) -> bool:
        """True while the subscribe in flight will be answered with a ``history`` frame of its own."""
        return self._awaiting_history

    @property
    def resuming(self) -> bool:
        """True while the subscribe in flight resumes after an event id (its ``history`` frame
        is the channel's own catch-up)."""
        return self._resuming

    @property
    def resyncing(self) -> bool:
        """True while an :class:`EpochChanged` waits for its ``sync_response``."""
        return self._resyncing

    def on_resync_failed(self) -> list[ChannelEvent]:
        """The sync asked for by :class:`EpochChanged` could not be done: deliver what was held."""
        events: list[ChannelEvent] = []
        if self._resyncing:
            self._resyncing = False
            self._flush_buffer(events)
        return events

    # ------------------------------------------------------------------ internals

    def _epoch_changed(self, frame: dict[str, Any]) -> bool:
        epoch = frame.get("epoch")
        return (
            self._state is ChannelState.SUBSCRIBED
            and isinstance(epoch, str)
            and self.epoch is not None
            and epoch != self.epoch
            and _offset(frame) is not None
        )

    def _flush_buffer(self, events: list[ChannelEvent]) -> None:
        self._buffering = self._resyncing = False
        buffered, self._buffer = self._buffer, []
        for frame in buffered:
            self._deliver(frame, events, replayed=False)

    def _accept(self, frame: dict[str, Any], events: list[ChannelEvent]) -> bool:
        """Dedupe by (epoch, offset) and advance the resume position; True if new."""
        offset = _offset(frame)
        if offset is None:
            return True  # ephemeral: not stored, not resumable, never a duplicate
        epoch = frame.get("epoch")
        epoch = epoch if isinstance(epoch, str) else self.epoch
        if epoch == self.epoch and self.last_offset is not None:
            if offset <= self.last_offset:
                self.duplicates += 1
                events.append(Duplicate(self.name, frame))
                return False
            if offset > self.last_offset + 1:
                self.gaps += 1
                events.append(Gap(self.name, self.last_offset + 1, offset))
        self.epoch = epoch
        self.last_offset = offset
        event_id = _event_id(frame)
        if event_id is not None:
            self.last_event_id = event_id
        return True

    def _apply_key(self, frame: dict[str, Any]) -> None:
        if self.keyed_state is not None:
            apply_keyed(self.keyed_state, frame)

    def _deliver(self, frame: dict[str, Any], events: list[ChannelEvent], *, replayed: bool) -> None:
        if self._accept(frame, events):
            self._apply_key(frame)
            self.delivered += 1
            events.append(ChannelMessage(self.name, frame, replayed))

    def _on_history(self, frame: dict[str, Any], events: list[ChannelEvent]) -> None:
        data = frame.get("data")
        items = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
        state = frame.get("state")
        if frame.get("recovered") is False:
            self._reset(frame, items, state if isinstance(state, dict) else None, events)
        else:
            if self.keyed_state is not None and isinstance(state, dict):
                self.keyed_state = dict(state)
            # Oldest first; anything we already have is dropped by offset.
            for item in sorted(items, key=lambda e: (_offset(e) is None, _offset(e) or 0)):
                self._deliver(item, events, replayed=True)
            offset = _offset(frame)
            if offset is not None:
                self.server_offset = offset
            if self.epoch is None and isinstance(frame.get("epoch"), str):
                self.epoch = frame["epoch"]
        self._awaiting_history = False
        # Catch-up is applied, so buffered live frames (all newer or duplicates) can follow.
        self._flush_buffer(events)

    def _reset(
        self,
        frame: dict[str, Any],
        items: list[dict[str, Any]],
        state: dict[str, Any] | None,
        events: list[ChannelEvent],
    ) -> None:
        epoch = frame.get("epoch")
        self.epoch = epoch if isinstance(epoch, str) else None
        offsets = [o for o in (_offset(e) for e in items) if o is not None]
        # history frames carry ``offset``; sync_response snapshots carry it as ``version``.
        frame_offset = _offset(frame)
        if frame_offset is None:
            version = frame.get("version")
            frame_offset = version if isinstance(version, int) and not isinstance(version, bool) else None
        self.last_offset = frame_offset if frame_offset is not None else (max(offsets) if offsets else None)
        latest = frame.get("latestEventId")
        self.last_event_id = latest if isinstance(latest, str) else (_event_id(items[-1]) if items else None)
        if self.keyed_state is not None or state is not None:
            self.keyed_state = dict(state) if state is not None else {}
        self.resets += 1
        events.append(
            Reset(
                self.name,
                self.epoch,
                self.last_offset,
                self.last_event_id,
                tuple(items),
                state,
                frame,
            )
        )

    def _on_sync_response(self, frame: dict[str, Any], events: list[ChannelEvent]) -> None:
        if frame.get("syncType") == "snapshot":
            raw = frame.get("events")
            items = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []
            state = frame.get("state")
            self._reset(frame, items, state if isinstance(state, dict) else None, events)
        else:
            raw = frame.get("events")
            for item in raw if isinstance(raw, list) else []:
                if isinstance(item, dict):
                    self._deliver(item, events, replayed=True)
        events.append(SyncReceived(self.name, frame))
        if self._resyncing:
            # The snapshot of the new epoch is applied; held live frames follow (older ones drop).
            self._resyncing = False
            self._flush_buffer(events)


class ChannelManager:
    """All channels of one connection, routing server frames by their ``channel`` field."""

    def __init__(self) -> None:
        self._channels: dict[str, ChannelCore] = {}
        self.unrouted = 0  # frames for channels we do not hold (late frames after unsubscribe)

    def add(self, name: str, options: ChannelOptions | None = None) -> ChannelCore:
        """Register a channel; raises ``ValueError`` if it is already registered."""
        if name in self._channels:
            raise ValueError(f"channel {name!r} is already subscribed on this connection")
        core = ChannelCore(name, options)
        self._channels[name] = core
        return core

    def get(self, name: str) -> ChannelCore | None:
        return self._channels.get(name)

    def remove(self, name: str) -> ChannelCore | None:
        return self._channels.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def __iter__(self) -> Iterator[ChannelCore]:
        return iter(list(self._channels.values()))

    def __len__(self) -> int:
        return len(self._channels)

    def route(self, frame: dict[str, Any]) -> list[ChannelEvent]:
        """Hand a server frame to its channel; frames for unknown channels are counted and dropped."""
        name = frame.get("channel")
        core = self._channels.get(name) if isinstance(name, str) else None
        if core is None:
            self.unrouted += 1
            return []
        return core.on_frame(frame)

    def on_connection_lost(self) -> list[ChannelEvent]:
        events: list[ChannelEvent] = []
        for core in list(self._channels.values()):
            events.extend(core.on_connection_lost())
        return events
