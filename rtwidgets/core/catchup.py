"""Sans-I/O catch-up of one stream: live frames held while a read runs, then one ordered output.

A *stream* is one channel's frames as one receiver sees them. Catching up means reading what
is stored (a snapshot, a gap fill) while the live feed keeps arriving; the live frames must wait
until the read's result is out, or newer frames would land before older ones. Two I/O layers
use this core:

* the gateway's subscribe (``rtwidgets.gateway.handlers``): one :class:`CatchUp` per
  subscribe call. It holds the channel's live frames while the broker reads the snapshot,
  marks where the presence member list was read, and releases the held frames after the
  ``history`` frame, the ``presence_sync`` in its place among them;
* the Redis broker's refill after a pub/sub reconnect: one :class:`CatchUp` per attached
  channel, for the channel's lifetime. It holds the live pub/sub messages while the stream
  is read from the newest position delivered, then delivers the read and the held messages,
  each offset once.

API (every method is synchronous and does no I/O; output is drained with :meth:`CatchUp.events`)::

    cu = CatchUp(position=None)          # or the stream's known position (epoch, offset)
    cu.on_live(frame, data)              # not holding: delivered at once (dedupe applies)
    ticket = cu.hold()                   # a read starts: live frames are held from now on
    cu.on_live(frame, data)              # held (cu.held_bytes tells how much)
    cu.mark("members")                   # a placement point in the held stream
    cu.on_read(ticket, frames, covered=Position(epoch, offset))   # the read's result
    for ev in cu.events():               # Deliver(read=True)..., ReadDone, then the held
        ...                              # frames (Deliver(read=False)) with each Marker in place
    cu.abort(ticket)                     # instead of on_read: the read failed, release the held
    cu.discard()                         # instead: drop what is held (returns how many frames)

Rules of this module:

* A frame is *positioned* when it is a stored message: ``type`` ``"message"``, an int
  ``offset`` and a str ``epoch`` (:func:`stream_position`). The core keeps the stream's
  :attr:`CatchUp.position`, the newest ``(epoch, offset)`` delivered or covered, and **drops a
  positioned frame whose offset is at or below it in the same epoch** (counted in
  :attr:`CatchUp.duplicates`). A positioned frame of another epoch is delivered and moves the
  position to its epoch (the history was replaced; the receiver is told by that epoch). The
  ``covered`` of the latest read stays a second floor until the next read: a frame it covers is
  dropped even after a frame of another epoch went out (a Redis restart racing a snapshot: an
  old-epoch frame arrives, then new-epoch frames the snapshot already holds). So the
  output is in offset order within an epoch and each offset comes out at most once. Frames that
  are not positioned (ephemeral messages, presence frames) are never dropped and keep their
  place among the live frames.
* While holding, nothing from the live feed is output. :meth:`CatchUp.on_read` outputs, in this
  order: the read's frames (deduplicated as above), one :class:`ReadDone`, then every held frame
  in arrival order (deduplicated against the position the read left). ``covered`` states what the
  read accounts for *for this receiver* without listing it: every stored message of that epoch at
  or below that offset. The gateway passes the snapshot's position for a new subscription (its
  ``history`` frame carries those events), and ``None`` when an already live subscription
  re-subscribes: that receiver has seen its own live stream only, not the snapshot's events (the
  ``history`` frame goes to another of its models), so every held frame reaches it.
* A :class:`Marker` lands after every frame that arrived before :meth:`CatchUp.mark` and before
  every frame that arrived after it; a read completing while it is held outputs its frames before
  it (they are older than the held stream). A mark while not holding is output at once. A mark
  never moves because the frame next to it was dropped as a duplicate.
* :meth:`CatchUp.hold` returns a ticket; a second ``hold`` while holding supersedes the read in
  flight (its ticket goes stale) and keeps what is held. ``on_read``/``abort`` with a stale ticket
  change nothing and return False: a read that lost a race with a reconnect is never applied.
* Nothing is lost silently: :meth:`CatchUp.abort` releases the held frames as they are (a failed
  read of a receiver that stays), :meth:`CatchUp.discard` drops them and returns how many; the
  caller decides which fits (and logs or counts it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

__all__ = [
    "CatchUp",
    "CatchUpEvent",
    "Deliver",
    "Marker",
    "Position",
    "ReadDone",
    "stream_position",
]


@dataclass(frozen=True)
class Position:
    """A place in a channel's stored stream: ``offset`` within ``epoch`` (None: not known yet,
    e.g. a channel without any stored message; no positioned frame is at or below it)."""

    epoch: str | None
    offset: int

    def covers(self, other: Position) -> bool:
        """True if ``other`` is at or below this position in the same epoch."""
        return self.epoch is not None and other.epoch == self.epoch and other.offset <= self.offset


def stream_position(frame: dict[str, Any]) -> Position | None:
    """The position of a stored message frame; None for any other frame (see the module rules)."""
    place = _place(frame)
    return None if place is None else Position(*place)


def _place(frame: dict[str, Any]) -> tuple[str, int] | None:
    # stream_position without building a Position: CatchUp runs this once per frame.
    if frame.get("type") != "message":
        return None
    offset = frame.get("offset")
    epoch = frame.get("epoch")
    if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(epoch, str):
        return None
    return epoch, offset


# ----------------------------------------------------------------------------- events


class Deliver(NamedTuple):
    """Send ``frame`` (already encoded as ``data``) to the receiver now. ``read``: it came from a
    read (:meth:`CatchUp.on_read`), not from the live feed.

    A NamedTuple (immutable, like the frozen dataclasses of the other events) because one is made
    per frame on the Redis broker's delivery path, and it costs a third of a frozen dataclass.
    """

    frame: dict[str, Any]
    data: bytes
    read: bool = False


@dataclass(frozen=True)
class Marker:
    """The placement point :meth:`CatchUp.mark` recorded; ``label`` is the caller's."""

    label: Any


@dataclass(frozen=True)
class ReadDone:
    """The read ``ticket`` is applied: what came before is the read's result, what follows is
    the live stream held meanwhile. ``covered``: what the caller said the read accounts for."""

    ticket: int
    covered: Position | None


CatchUpEvent = Deliver | Marker | ReadDone


# ----------------------------------------------------------------------------- core


class CatchUp:
    """The catch-up of one stream (see the module rules).

    Args:
        position: where the stream stands already (positioned frames at or below it are
            dropped); None when nothing was delivered yet.

    Raises:
        TypeError: ``position`` is not a :class:`Position` or None.
    """

    __slots__ = (
        "_bytes",
        "_epoch",
        "_events",
        "_floor",
        "_frames",
        "_held",
        "_offset",
        "_positioned",
        "_ticket",
        "duplicates",
    )

    def __init__(self, position: Position | None = None) -> None:
        if position is not None and not isinstance(position, Position):
            raise TypeError(f"position must be a Position or None, got {position!r}")
        # The position as plain fields (no object per delivered frame); see the position property.
        self._positioned = position is not None
        self._epoch: str | None = None if position is None else position.epoch
        self._offset = 0 if position is None else position.offset
        self._floor: Position | None = None  # ``covered`` of the latest read
        # Held (frame, data) pairs and markers, in arrival order; None: not holding.
        self._held: list[tuple[dict[str, Any], bytes] | Marker] | None = None
        self._bytes = 0
        self._frames = 0
        self._ticket = 0
        self._events: list[CatchUpEvent] = []
        self.duplicates = 0  # positioned frames dropped because they were already out

    # ------------------------------------------------------------------ state

    @property
    def position(self) -> Position | None:
        """The newest position delivered or covered (see the module rules)."""
        return Position(self._epoch, self._offset) if self._positioned else None

    @property
    def holding(self) -> bool:
        """True between :meth:`hold` and the read's end (:meth:`on_read`, :meth:`abort`, :meth:`discard`)."""
        return self._held is not None

    @property
    def held_bytes(self) -> int:
        """Bytes of the frames held now (for a bound on a read that never ends)."""
        return self._bytes

    @property
    def held_frames(self) -> int:
        """How many frames are held now (markers not counted)."""
        return self._frames

    # ------------------------------------------------------------------ inputs

    def hold(self) -> int:
        """A read starts: hold live frames until it ends. Returns its ticket.

        Holding already? The read in flight is superseded (its ticket goes stale) and what is
        held stays held: the new read's result goes before it.
        """
        if self._held is None:
            self._held = []
        self._ticket += 1
        return self._ticket

    def on_live(self, frame: dict[str, Any], data: bytes) -> None:
        """A frame from the live feed, in the order the feed gave it.

        Raises:
            TypeError: ``frame`` is not a dict or ``data`` not bytes.
        """
        if not isinstance(frame, dict) or not isinstance(data, bytes):
            _refuse(frame, data)
        held = self._held
        if held is None:
            self._output(frame, data, False)
            return
        held.append((frame, data))
        self._bytes += len(data)
        self._frames += 1

    def mark(self, label: Any = None) -> None:
        """Record a placement point here in the stream (output as :class:`Marker`)."""
        marker = Marker(label)
        if self._held is None:
            self._events.append(marker)
        else:
            self._held.append(marker)

    def on_read(
        self,
        ticket: int,
        frames: Iterable[tuple[dict[str, Any], bytes]] = (),
        *,
        covered: Position | None = None,
    ) -> bool:
        """The read ``ticket`` returned ``frames`` (oldest first) and accounts for ``covered``.

        Outputs the frames, :class:`ReadDone`, then the held frames (see the module rules) and
        stops holding. Returns False, changing nothing, if ``ticket`` is not the read in flight.

        Raises:
            TypeError: a frame is not a dict with bytes, or ``covered`` not a Position or None.
        """
        if covered is not None and not isinstance(covered, Position):
            raise TypeError(f"covered must be a Position or None, got {covered!r}")
        if not self._current(ticket):
            return False
        pairs = list(frames)
        for frame, data in pairs:
            if not isinstance(frame, dict) or not isinstance(data, bytes):
                _refuse(frame, data)
        for frame, data in pairs:
            self._output(frame, data, True)
        self._floor = covered
        if covered is not None:
            self._advance(covered)
        self._events.append(ReadDone(ticket, covered))
        self._release()
        return True

    def abort(self, ticket: int) -> bool:
        """The read ``ticket`` failed: output the held frames as they are and stop holding.

        Returns False, changing nothing, if ``ticket`` is not the read in flight.
        """
        if not self._current(ticket):
            return False
        self._release()
        return True

    def discard(self) -> int:
        """Stop holding and drop everything held (markers too). Returns how many frames were
        dropped, for the caller to account for."""
        dropped = self._frames  # 0 when not holding
        self._held = None
        self._bytes = self._frames = 0
        return dropped

    # ------------------------------------------------------------------ output

    def events(self) -> list[CatchUpEvent]:
        """What to do, in order, since the last call (then forgotten)."""
        out, self._events = self._events, []
        return out

    # ------------------------------------------------------------------ internals

    def _current(self, ticket: int) -> bool:
        return self._held is not None and ticket == self._ticket

    def _release(self) -> None:
        held, self._held = self._held, None
        self._bytes = self._frames = 0
        for item in held or ():
            if isinstance(item, Marker):
                self._events.append(item)
            else:
                self._output(item[0], item[1], False)

    def _output(self, frame: dict[str, Any], data: bytes, read: bool) -> None:
        # _place inlined: this runs once per frame (on the Redis broker's delivery path too).
        offset = frame.get("offset")
        epoch = frame.get("epoch")
        if (
            isinstance(offset, int)
            and not isinstance(offset, bool)
            and isinstance(epoch, str)
            and frame.get("type") == "message"
        ):
            # An epoch of None (a channel never written to) covers nothing, like Position.covers.
            floor = self._floor
            if (self._epoch == epoch and offset <= self._offset) or (
                floor is not None and floor.epoch == epoch and offset <= floor.offset
            ):
                self.duplicates += 1
                return
            self._positioned = True
            self._epoch = epoch
            self._offset = offset
        self._events.append(Deliver(frame, data, read))

    def _advance(self, covered: Position) -> None:
        if not self._positioned or self._epoch != covered.epoch or covered.offset > self._offset:
            self._positioned = True
            self._epoch = covered.epoch
            self._offset = covered.offset


def _refuse(frame: Any, data: Any) -> NoReturn:
    # Called only when the frame is not a dict or the data not bytes.
    if not isinstance(frame, dict):
        raise TypeError(f"frame must be a dict, got {type(frame).__name__}")
    raise TypeError(f"data must be the frame's encoded bytes, got {type(data).__name__}")
