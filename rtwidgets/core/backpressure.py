"""Inbound backpressure buffer: absorb bursts, shed load visibly, deliver in paced batches.

Rules of this module:

* Sans-I/O. No timers, no threads, no asyncio, no clock: the caller passes ``now`` (seconds
  from a monotonic clock, required) to every time-dependent input, calls
  :meth:`BackpressureBuffer.poll` when :meth:`~BackpressureBuffer.next_deadline` is reached,
  and receives the batch. This replaces the design's ``requestAnimationFrame`` loop.
* Nothing is lost silently. Every pushed item ends in exactly one of four places, and
  ``pushed == delivered + dropped + merged + buffered`` always holds (see :meth:`stats`).
  ``on_discard(item, reason)`` is told about every item that is not delivered.
* Not thread-safe: drive one buffer from one thread (the runtime's loop).

Functional spec: the design's ``BackpressureBuffer`` (docs/design.md#backpressure), with these fixes:

* 'latest' found the existing key with a linear ``findIndex`` (O(n) per push at capacity);
  here a dict indexes the newest slot per key, so a push is O(1).
* 'latest' replaced the *first* buffered entry of a key, so with two entries ``k:1, k:2``
  a new ``k:3`` landed in ``k:1``'s slot and ``k:2`` was delivered after it: an older value
  overwrote a newer one. Here the *newest* slot of the key is replaced, so values of one
  key are always delivered in push order.
* Items discarded at capacity ('latest' without a key, 'sample', 'batch') and by in-batch
  de-duplication were dropped without a trace; they are now counted and reported.
* 'sample' used ``Math.random``; it uses the injected :class:`random.Random` (deterministic in tests).
* The pressure level was not re-evaluated on a push at capacity; it is now re-evaluated on
  every push, poll and clear.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from ._clock import MonotonicNow

__all__ = [
    "BackpressureBuffer",
    "BackpressureConfig",
    "BackpressureStats",
    "DiscardReason",
    "PressureLevel",
    "SamplingStrategy",
]

T = TypeVar("T")

PressureLevel = Literal["none", "moderate", "high"]
SamplingStrategy = Literal["latest", "sample", "batch"]
# 'dropped': shed at capacity; 'merged': superseded by a newer item with the same key;
# 'cleared': removed by clear(). 'cleared' items are counted in ``stats().dropped``.
DiscardReason = Literal["dropped", "merged", "cleared"]

_STRATEGIES: frozenset[str] = frozenset({"latest", "sample", "batch"})


@dataclass(frozen=True)
class BackpressureConfig:
    """Buffer tuning. Water marks are fill ratios in [0, 1]; ``batch_interval`` is in seconds.

    Pressure is ``'high'`` when ``fill >= high_water_mark``, ``'moderate'`` when
    ``fill >= low_water_mark``, else ``'none'`` (the design's thresholds). A batch holds at
    most ``batch_size_none`` / ``batch_size_moderate`` / ``batch_size_high`` items for the
    pressure level at poll time (the design: 20 / 50 / 100), so a congested buffer drains faster.
    """

    max_buffer_size: int = 1000
    high_water_mark: float = 0.8
    low_water_mark: float = 0.5
    sampling_strategy: SamplingStrategy = "latest"
    batch_interval: float = 0.016
    on_pressure: Callable[[PressureLevel], None] | None = None
    on_discard: Callable[[object, DiscardReason], None] | None = None
    batch_size_none: int = 20
    batch_size_moderate: int = 50
    batch_size_high: int = 100
    # Fraction of the buffer shed at capacity by the 'batch' strategy (the design: 10 %).
    batch_drop_fraction: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.max_buffer_size, bool) or not isinstance(self.max_buffer_size, int):
            raise TypeError(f"max_buffer_size must be an int, got {self.max_buffer_size!r}")
        if self.max_buffer_size < 1:
            raise ValueError(f"max_buffer_size must be >= 1, got {self.max_buffer_size}")
        if not 0.0 <= self.low_water_mark <= self.high_water_mark <= 1.0:
            raise ValueError(
                "water marks must satisfy 0 <= low_water_mark <= high_water_mark <= 1, got "
                f"low={self.low_water_mark}, high={self.high_water_mark}"
            )
        if self.sampling_strategy not in _STRATEGIES:
            raise ValueError(
                f"sampling_strategy must be one of {sorted(_STRATEGIES)}, got {self.sampling_strategy!r}"
            )
        if not (math.isfinite(self.batch_interval) and self.batch_interval >= 0):
            raise ValueError(f"batch_interval must be finite seconds >= 0, got {self.batch_interval}")
        for name in ("batch_size_none", "batch_size_moderate", "batch_size_high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0.0 < self.batch_drop_fraction <= 1.0:
            raise ValueError(f"batch_drop_fraction must be in (0, 1], got {self.batch_drop_fraction}")


@dataclass(frozen=True)
class BackpressureStats:
    """A snapshot of the buffer. ``pushed == delivered + dropped + merged + buffer_size``."""

    buffer_size: int
    pressure: PressureLevel
    fill_ratio: float
    pushed: int
    delivered: int
    dropped: int
    merged: int

    @property
    def shed(self) -> int:
        """Items not delivered because of load (dropped or merged) - what LiveChart shows."""
        return self.dropped + self.merged


class _Slot(Generic[T]):
    """One buffered item; mutable so 'latest' can replace a value in place."""

    __slots__ = ("item", "key")

    def __init__(self, item: T, key: Hashable | None) -> None:
        self.item = item
        self.key = key


class BackpressureBuffer(Generic[T]):
    """A bounded FIFO that sheds load by strategy and hands out paced batches.

    ``handler`` (optional) is called with every batch :meth:`poll` produces, before
    ``poll`` returns that same batch; its exceptions propagate (the batch still counts as
    delivered). ``key`` (optional) extracts a hashable key: it enables per-key merging for
    'latest' and in-batch de-duplication (latest value per key, at its first position).
    """

    def __init__(
        self,
        config: BackpressureConfig | None = None,
        handler: Callable[[list[T]], None] | None = None,
        key: Callable[[T], Hashable] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config if config is not None else BackpressureConfig()
        self._handler = handler
        self._key = key
        self._now = MonotonicNow()
        # A fixed seed keeps 'sample' reproducible when the caller does not inject an RNG.
        self._rng = rng if rng is not None else random.Random(0)
        self._buffer: deque[_Slot[T]] = deque()
        self._newest_by_key: dict[Hashable, _Slot[T]] = {}
        self._pressure: PressureLevel = self._level_for(0)
        self._last_flush: float | None = None
        self._pending_since: float | None = None
        self._pushed = 0
        self._delivered = 0
        self._dropped = 0
        self._merged = 0

    # ------------------------------------------------------------------ public API

    @property
    def pressure(self) -> PressureLevel:
        """The current pressure level."""
        return self._pressure

    def __len__(self) -> int:
        return len(self._buffer)

    def push(self, item: T, now: float) -> None:
        """Accept one item at ``now``. At capacity, the sampling strategy decides what is shed.

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        key = self._key(item) if self._key is not None else None
        self._pushed += 1
        if len(self._buffer) >= self.config.max_buffer_size:
            self._push_at_capacity(item, key)
        else:
            self._append(item, key)
        if self._buffer and self._pending_since is None:
            self._pending_since = now
        self._update_pressure()

    def poll(self, now: float) -> list[T] | None:
        """Return the next batch if ``batch_interval`` has elapsed since the last one, else None.

        The first batch is due as soon as anything is buffered. The batch size depends on
        the pressure level before the batch is taken.

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        if not self._buffer or not self._interval_elapsed(now):
            return None
        size = min(len(self._buffer), self._batch_size(self._pressure))
        slots = [self._popleft() for _ in range(size)]
        self._last_flush = now
        self._pending_since = now if self._buffer else None
        batch = self._dedupe(slots) if self._key is not None else [slot.item for slot in slots]
        self._delivered += len(batch)
        self._update_pressure()
        if self._handler is not None:
            self._handler(batch)
        return batch

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`poll` returns a batch; None when empty."""
        if not self._buffer:
            return None
        assert self._pending_since is not None
        if self._last_flush is None:
            return self._pending_since
        return max(self._pending_since, self._last_flush + self.config.batch_interval)

    def stats(self) -> BackpressureStats:
        """Counters and the current fill. Cleared items are included in ``dropped``."""
        size = len(self._buffer)
        return BackpressureStats(
            buffer_size=size,
            pressure=self._pressure,
            fill_ratio=size / self.config.max_buffer_size,
            pushed=self._pushed,
            delivered=self._delivered,
            dropped=self._dropped,
            merged=self._merged,
        )

    def clear(self) -> list[T]:
        """Empty the buffer and return what was in it (counted as dropped, reason 'cleared')."""
        items = [slot.item for slot in self._buffer]
        self._buffer.clear()
        self._newest_by_key.clear()
        self._pending_since = None
        self._dropped += len(items)
        for item in items:
            self._discard(item, "cleared")
        self._update_pressure()
        return items

    # ------------------------------------------------------------------ internals

    def _interval_elapsed(self, now: float) -> bool:
        # Compared as ``now >= last + interval`` (not ``now - last >= interval``) so that
        # polling exactly at next_deadline() always succeeds despite float rounding.
        return self._last_flush is None or now >= self._last_flush + self.config.batch_interval

    def _batch_size(self, level: PressureLevel) -> int:
        if level == "high":
            return self.config.batch_size_high
        if level == "moderate":
            return self.config.batch_size_moderate
        return self.config.batch_size_none

    def _append(self, item: T, key: Hashable | None) -> None:
        slot = _Slot(item, key)
        self._buffer.append(slot)
        if self._key is not None:
            self._newest_by_key[key] = slot

    def _popleft(self) -> _Slot[T]:
        slot = self._buffer.popleft()
        # Only forget the key if this was its newest slot; a newer one may still be queued.
        if self._key is not None and self._newest_by_key.get(slot.key) is slot:
            del self._newest_by_key[slot.key]
        return slot

    def _drop_oldest(self, count: int) -> None:
        for _ in range(min(count, len(self._buffer))):
            slot = self._popleft()
            self._dropped += 1
            self._discard(slot.item, "dropped")

    def _push_at_capacity(self, item: T, key: Hashable | None) -> None:
        strategy = self.config.sampling_strategy
        if strategy == "latest":
            newest = self._newest_by_key.get(key) if self._key is not None else None
            if newest is not None:
                # Replace the key's newest slot (not its first): per-key order is preserved.
                superseded = newest.item
                newest.item = item
                self._merged += 1
                self._discard(superseded, "merged")
                return
            self._drop_oldest(1)
            self._append(item, key)
        elif strategy == "sample":
            # Under pressure keep ~50 %: either the incoming item or the oldest one goes.
            if self._rng.random() < 0.5:
                self._drop_oldest(1)
                self._append(item, key)
            else:
                self._dropped += 1
                self._discard(item, "dropped")
        else:  # 'batch': shed the oldest slice, keep the newcomer.
            self._drop_oldest(max(1, math.ceil(len(self._buffer) * self.config.batch_drop_fraction)))
            self._append(item, key)

    def _dedupe(self, slots: list[_Slot[T]]) -> list[T]:
        """Latest value per key, at the key's first position in the batch (the design's semantics)."""
        latest: dict[Hashable, T] = {}
        for slot in slots:
            if slot.key in latest:
                superseded = latest[slot.key]
                self._merged += 1
                self._discard(superseded, "merged")
            latest[slot.key] = slot.item
        return list(latest.values())

    def _discard(self, item: T, reason: DiscardReason) -> None:
        if self.config.on_discard is not None:
            self.config.on_discard(item, reason)

    def _level_for(self, size: int) -> PressureLevel:
        fill = size / self.config.max_buffer_size
        if fill >= self.config.high_water_mark:
            return "high"
        if fill >= self.config.low_water_mark:
            return "moderate"
        return "none"

    def _update_pressure(self) -> None:
        level = self._level_for(len(self._buffer))
        if level != self._pressure:
            self._pressure = level
            if self.config.on_pressure is not None:
                self.config.on_pressure(level)
