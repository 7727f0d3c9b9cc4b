"""Message ordering: none, FIFO per sender, or total order by a global sequence.

Rules of this module:

* Sans-I/O. :meth:`MessageOrderer.on_message` returns the payloads that became deliverable, in
  delivery order; :meth:`~MessageOrderer.tick` does the same for gaps whose wait expired
  (the design's ``setTimeout``). Call ``tick`` at :meth:`~MessageOrderer.next_deadline`.
  Times are seconds from a monotonic clock, passed as ``now`` (required: an orderer reads no
  clock). The design's ``onMessage`` callback becomes these return values.
* Nothing is lost silently: ``received == delivered + buffered + duplicates + late + discarded``
  (see :class:`OrderingStats`).
* Not thread-safe: drive one orderer from one thread.

Sequences. 'fifo' orders each ``sender_id``'s ``sequence_number`` (the client-assigned
``seq``); 'total' orders ``global_sequence`` (the gateway's per-channel ``offset``, starting
at 1). Where a stream starts is configurable: ``initial_sequence`` / ``initial_global_sequence``
is the first number expected; when it is None (the default) **the first message seen starts
the stream** and is delivered at once. So a client that joins a channel late (first offset
seen is 5000) never waits for offsets 1..4999; a message below the start point that arrives
afterwards is counted as ``late`` and not delivered (total order forbids delivering it after
a later one). Callers that know their position (e.g. resuming after offset N) pass N + 1.

Functional spec: the design's ``MessageOrderer`` (docs/design.md#ordering), with fixes:

* FIFO forced delivery on a full buffer delivered the oldest buffered message without
  advancing the expected sequence, so smaller sequence numbers could still be delivered
  after it (order broken) and the stream then stalled on the hole it left until a timeout.
  Here forced delivery skips the gap up to the forced message (counted in
  ``gaps_skipped``) and advances, exactly like the design's total-order path.
* Buffer insertion and duplicate checks were linear scans; here they are dict/heap O(log n).
* Duplicates and late messages were ignored silently; they are counted.
* The buffer bound is ``max_buffer_size`` messages per stream (per sender for 'fifo', as in
  the design; one stream for 'total'), and is never exceeded at rest.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from ._clock import MonotonicNow
from ._compat import deprecated_alias

__all__ = [
    "MessageOrderer",
    "OrderedMessage",
    "OrderingConfig",
    "OrderingStats",
    "OrderingType",
    "message_to_order",
]

T = TypeVar("T")

OrderingType = Literal["none", "fifo", "total"]
_TYPES: frozenset[str] = frozenset({"none", "fifo", "total"})
# How many skipped ranges per stream are remembered to tell 'late' from 'duplicate'.
_SKIP_MEMORY = 64


def _check_int(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int{' or None' if optional else ''}, got {value!r}")


@dataclass(frozen=True)
class OrderingConfig:
    """``max_wait_time`` (seconds) is how long a gap may hold back later messages."""

    type: OrderingType = "fifo"
    max_buffer_size: int = 1000
    max_wait_time: float = 1.0
    initial_sequence: int | None = None
    initial_global_sequence: int | None = None

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"type must be one of {sorted(_TYPES)}, got {self.type!r}")
        _check_int("max_buffer_size", self.max_buffer_size)
        if self.max_buffer_size < 1:
            raise ValueError(f"max_buffer_size must be >= 1, got {self.max_buffer_size}")
        if not (math.isfinite(self.max_wait_time) and self.max_wait_time >= 0):
            raise ValueError(f"max_wait_time must be finite seconds >= 0, got {self.max_wait_time}")
        _check_int("initial_sequence", self.initial_sequence, optional=True)
        _check_int("initial_global_sequence", self.initial_global_sequence, optional=True)


@dataclass(frozen=True)
class OrderedMessage(Generic[T]):
    """One message to order. ``global_sequence`` is required for 'total' ordering."""

    id: str
    sender_id: str
    sequence_number: int
    global_sequence: int | None
    timestamp: float
    data: T

    def __post_init__(self) -> None:
        _check_int("sequence_number", self.sequence_number)
        _check_int("global_sequence", self.global_sequence, optional=True)


@dataclass(frozen=True)
class OrderingStats:
    """Counters. ``received == delivered + buffered + duplicates + late + discarded``.

    ``late``: arrived after its gap was skipped (or below the stream's start point).
    ``gaps_skipped``: sequence numbers given up on (by timeout or forced delivery).
    ``forced``: deliveries forced by a full buffer. ``discarded``: buffered messages returned by reset().
    """

    received: int
    delivered: int
    buffered: int
    duplicates: int
    late: int
    discarded: int
    gaps_skipped: int
    forced: int


class _SkipLog:
    """Recently skipped sequence ranges, to classify a below-expected arrival as late, not duplicate."""

    def __init__(self) -> None:
        self._ranges: list[tuple[int, int]] = []

    def add(self, low: int, high: int) -> None:
        self._ranges.append((low, high))
        if len(self._ranges) > _SKIP_MEMORY:
            del self._ranges[0]

    def take(self, seq: int) -> bool:
        """True (and forget ``seq``, so a second copy counts as a duplicate) if it was skipped."""
        for index, (low, high) in enumerate(self._ranges):
            if low <= seq <= high:
                parts = [(lo, hi) for lo, hi in ((low, seq - 1), (seq + 1, high)) if lo <= hi]
                self._ranges[index : index + 1] = parts
                return True
        return False


class _Stream(Generic[T]):
    """One sequence stream (a sender for 'fifo', the channel for 'total')."""

    def __init__(self, expected: int | None) -> None:
        self.expected = expected
        self.pending: dict[int, tuple[T, float]] = {}
        self.heap: list[int] = []  # pending sequence numbers; lazily cleaned
        self.arrivals: deque[tuple[float, int]] = deque()  # (arrival, seq), arrival-ordered; lazy
        self.skipped = _SkipLog()
        # A stream whose start was inferred records it, so earlier arrivals count as late.
        self.start: int | None = expected

    def deadline(self, max_wait: float) -> float | None:
        while self.arrivals:
            arrival, seq = self.arrivals[0]
            entry = self.pending.get(seq)
            if entry is not None and entry[1] == arrival:
                return arrival + max_wait
            self.arrivals.popleft()
        return None

    def pop_min(self) -> int:
        while True:
            seq = heapq.heappop(self.heap)
            if seq in self.pending:
                return seq


class MessageOrderer(Generic[T]):
    """Reorders :class:`OrderedMessage` payloads by the configured guarantee."""

    def __init__(self, config: OrderingConfig | None = None) -> None:
        self.config = config if config is not None else OrderingConfig()
        self._now = MonotonicNow()
        self._streams: dict[str, _Stream[T]] = {}
        self._total: _Stream[T] = _Stream(self.config.initial_global_sequence)
        self._received = 0
        self._delivered = 0
        self._duplicates = 0
        self._late = 0
        self._discarded = 0
        self._gaps_skipped = 0
        self._forced = 0

    # ------------------------------------------------------------------ public API

    def on_message(self, message: OrderedMessage[T], now: float) -> list[T]:
        """Accept one message; return the payloads now deliverable, in order.

        Expired gaps are flushed first (as if their timers had fired before this arrival).

        Raises:
            TypeError: ``message`` is not an :class:`OrderedMessage`.
            ValueError: 'total' ordering and ``global_sequence`` is missing, or ``now`` is
                earlier than a time already seen.
        """
        if not isinstance(message, OrderedMessage):
            raise TypeError(f"expected an OrderedMessage, got {type(message).__name__}")
        kind = self.config.type
        if kind == "total" and message.global_sequence is None:
            raise ValueError(f"message {message.id!r} has no global_sequence; 'total' ordering needs one")
        out = self.tick(now)
        self._received += 1
        if kind == "none":
            out.append(message.data)
            self._delivered += 1
            return out
        if kind == "fifo":
            stream = self._streams.get(message.sender_id)
            if stream is None:
                stream = self._streams[message.sender_id] = _Stream(self.config.initial_sequence)
            seq = message.sequence_number
        else:
            stream = self._total
            assert message.global_sequence is not None
            seq = message.global_sequence
        self._offer(stream, seq, message.data, now, out)
        return out

    receive = deprecated_alias("receive", on_message)

    def tick(self, now: float) -> list[T]:
        """Deliver past every gap that has held a buffered message for ``max_wait_time``.

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        out: list[T] = []
        for stream in self._all_streams():
            self._flush_expired(stream, now, out)
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` will next have something to flush; None if nothing is buffered."""
        wait = self.config.max_wait_time
        deadlines = [d for s in self._all_streams() if (d := s.deadline(wait)) is not None]
        return min(deadlines, default=None)

    def stats(self) -> OrderingStats:
        return OrderingStats(
            received=self._received,
            delivered=self._delivered,
            buffered=sum(len(s.pending) for s in self._all_streams()),
            duplicates=self._duplicates,
            late=self._late,
            discarded=self._discarded,
            gaps_skipped=self._gaps_skipped,
            forced=self._forced,
        )

    def reset(self) -> list[T]:
        """Forget all sequence state; return still-buffered payloads in sequence order (counted discarded).

        Counters are kept. The next messages start streams afresh per the config's start rule.
        """
        leftovers: list[T] = []
        for stream in self._all_streams():
            leftovers.extend(stream.pending[seq][0] for seq in sorted(stream.pending))
        self._discarded += len(leftovers)
        self._streams.clear()
        self._total = _Stream(self.config.initial_global_sequence)
        return leftovers

    # ------------------------------------------------------------------ internals

    def _all_streams(self) -> Iterator[_Stream[T]]:
        yield from self._streams.values()
        yield self._total

    def _offer(self, stream: _Stream[T], seq: int, data: T, now: float, out: list[T]) -> None:
        if stream.expected is None:
            stream.expected = stream.start = seq
        if seq < stream.expected:
            below_start = stream.start is not None and seq < stream.start
            if below_start or stream.skipped.take(seq):
                self._late += 1
            else:
                self._duplicates += 1
            return
        if seq in stream.pending:
            self._duplicates += 1
            return
        if seq == stream.expected:
            self._deliver(stream, data, out)
            self._drain(stream, out)
            return
        stream.pending[seq] = (data, now)
        heapq.heappush(stream.heap, seq)
        stream.arrivals.append((now, seq))
        if len(stream.pending) > self.config.max_buffer_size:
            # Bounded buffer: give up on the gap before the oldest buffered message.
            self._forced += 1
            self._release(stream, stream.pop_min(), out)
            self._drain(stream, out)

    def _flush_expired(self, stream: _Stream[T], now: float, out: list[T]) -> None:
        wait = self.config.max_wait_time
        upto: int | None = None
        while stream.arrivals and stream.arrivals[0][0] + wait <= now:
            _, seq = stream.arrivals.popleft()
            if seq in stream.pending and (upto is None or seq > upto):
                upto = seq
        if upto is None:
            return
        while stream.pending:
            seq = stream.pop_min()
            if seq > upto:
                heapq.heappush(stream.heap, seq)  # not due yet: put it back
                break
            self._release(stream, seq, out)
        self._drain(stream, out)

    def _release(self, stream: _Stream[T], seq: int, out: list[T]) -> None:
        """Deliver buffered ``seq``, skipping (and remembering) any gap before it."""
        assert stream.expected is not None
        if seq > stream.expected:
            self._gaps_skipped += seq - stream.expected
            stream.skipped.add(stream.expected, seq - 1)
            stream.expected = seq
        data, _ = stream.pending.pop(seq)
        self._deliver(stream, data, out)

    def _deliver(self, stream: _Stream[T], data: T, out: list[T]) -> None:
        assert stream.expected is not None
        out.append(data)
        self._delivered += 1
        stream.expected += 1

    def _drain(self, stream: _Stream[T], out: list[T]) -> None:
        """Deliver the consecutive run from ``expected``; then drop index entries of delivered seqs."""
        while stream.expected in stream.pending:
            data, _ = stream.pending.pop(stream.expected)
            self._deliver(stream, data, out)
        # Delivered seqs are all below ``expected`` and every pending one is above it, so the
        # stale heap entries sit at the top; trimming here keeps the heap as small as the buffer.
        assert stream.expected is not None
        while stream.heap and stream.heap[0] < stream.expected:
            heapq.heappop(stream.heap)
        while stream.arrivals and stream.arrivals[0][1] not in stream.pending:
            stream.arrivals.popleft()


def message_to_order(frame: dict[str, Any], ordering: str) -> OrderedMessage[dict[str, Any]] | None:
    """A gateway ``message`` frame as the orderer sees it, or None when it carries nothing to
    order by: under ``'total'`` an ephemeral message (no ``offset``), under ``'fifo'`` one without
    the sender's ``seq``. The sender is the frame's ``clientId`` (a connection), the global
    sequence its ``offset``."""
    offset, seq = frame.get("offset"), frame.get("seq")
    if ordering == "total":
        if not isinstance(offset, int) or isinstance(offset, bool):
            return None
        number = offset
    elif isinstance(seq, int) and not isinstance(seq, bool):
        number = seq
    else:
        return None
    return OrderedMessage(
        id=str(frame.get("eventId") or frame.get("id") or ""),
        sender_id=str(frame.get("clientId") or frame.get("senderId") or ""),
        sequence_number=number,
        global_sequence=offset if ordering == "total" else None,
        timestamp=0.0,
        data=frame,
    )
