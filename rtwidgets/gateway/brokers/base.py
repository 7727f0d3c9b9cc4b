"""The broker interface: what a gateway needs from shared storage and fan-out.

A broker owns, per channel:

* an **epoch** (random string, new whenever the channel's history is lost, e.g. a
  fresh in-memory broker or a Redis that restarted empty) and a monotonically
  increasing integer **offset** (1, 2, 3, ... per stored message);
* a bounded **history** of stored ``message`` frames, resumable from an event id;
* a **keyed state**: for publishes that carry ``key``, the latest frame per key
  (a frame whose ``data`` is ``None`` deletes the key) — the channel's snapshot;
* **presence**: members keyed by client id;
* **fan-out**: every frame for a channel reaches the listener of every gateway that
  attached the channel, in the same order for everyone (offset order for messages).

Shape follows Redis: pub/sub (fan-out), streams (history), hashes (presence, state).
All methods are coroutines run on the gateway's event loop; the listener is called on
that loop too. Implementations: :mod:`.memory` (embedded default), :mod:`.redis`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rtwidgets.errors import BrokerUnavailable, StateFull  # defined there; re-exported from here

__all__ = ["Broker", "BrokerUnavailable", "FrameListener", "SnapshotResult", "StateFull"]

# listener(channel, frame, encoded): ``encoded`` is the frame already serialised to UTF-8
# JSON bytes (``protocol.encode_bytes``, or the bytes Redis carried), so a gateway writes
# each fan-out frame as it is, without encoding it again per subscriber or per message.
FrameListener = Callable[[str, dict[str, Any], bytes], None]


@dataclass(frozen=True)
class SnapshotResult:
    """What a (re)subscribing client needs to catch up on a channel.

    ``events``: stored ``message`` frames, oldest first — after ``last_event_id`` when
    ``recovered`` is True, otherwise the newest ``history`` ones.
    ``recovered``: None when no ``last_event_id`` was asked for; True when every event
    after it is in ``events``; False when the gap is older than the retained history or
    the epoch changed (then ``state`` is always filled so the client can rebuild).
    ``state``: key -> latest frame, when asked for or when not recovered.
    """

    channel: str
    epoch: str
    offset: int  # offset of the newest stored event (0: none yet)
    latest_event_id: str | None
    events: list[dict[str, Any]]
    recovered: bool | None
    state: dict[str, dict[str, Any]] | None


class Broker(ABC):
    """Abstract broker. Subclasses must keep every operation safe to call concurrently."""

    def __init__(self) -> None:
        self._listener: FrameListener | None = None

    def set_listener(self, listener: FrameListener) -> None:
        """Register the gateway's delivery callback (exactly one per broker)."""
        self._listener = listener

    @abstractmethod
    async def start(self) -> None:
        """Connect / initialise. Raise :class:`BrokerUnavailable` if the store is unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and tasks. Idempotent."""

    @abstractmethod
    async def attach(self, channel: str) -> None:
        """Start delivering ``channel``'s frames to this gateway's listener."""

    @abstractmethod
    async def detach(self, channel: str) -> None:
        """Stop delivering ``channel``'s frames (no local subscriber left)."""

    @abstractmethod
    async def publish(
        self, channel: str, frame: dict[str, Any], *, key: str | None = None, msg_id: str | None = None
    ) -> dict[str, Any]:
        """Store and fan out one ``message`` frame; return the frame as delivered.

        The broker fills ``id`` and ``eventId`` (the event id), ``offset``, ``epoch``
        and ``timestamp`` (ms) if absent. With ``key`` it also updates the keyed state.
        With ``msg_id`` already seen on this channel (within history), nothing is stored
        or sent again and the earlier frame is returned with ``"duplicate": True``.
        Raises :class:`StateFull` (nothing stored) when a new key would exceed the state bound.
        """

    @abstractmethod
    async def broadcast(self, channel: str, frame: dict[str, Any]) -> None:
        """Fan out a frame that is not stored (ephemeral messages, presence events)."""

    @abstractmethod
    async def snapshot(
        self,
        channel: str,
        *,
        last_event_id: str | None,
        epoch: str | None,
        history: int,
        want_state: bool,
    ) -> SnapshotResult:
        """Catch-up data for a subscriber; see :class:`SnapshotResult`.

        With ``last_event_id``: every stored event after it if still retained (and
        ``epoch`` matches when given), else ``recovered=False``, the newest ``history``
        events (all retained ones if ``history`` is 0) and the keyed state.
        Without: the newest ``history`` events (none if 0).
        """

    @abstractmethod
    async def presence_set(self, channel: str, member: dict[str, Any]) -> None:
        """Insert or replace ``member`` (keyed by ``member['clientId']``)."""

    @abstractmethod
    async def presence_remove(self, channel: str, client_id: str) -> dict[str, Any] | None:
        """Remove a member; return it, or None if it was not there."""

    @abstractmethod
    async def presence_members(self, channel: str) -> list[dict[str, Any]]:
        """All current members of ``channel``, in join order where known."""

    def deliver(self, channel: str, frame: dict[str, Any], encoded: bytes) -> None:
        """Hand one frame to the gateway listener (for subclasses)."""
        if self._listener is not None:
            self._listener(channel, frame, encoded)
