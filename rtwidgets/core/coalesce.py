"""Widget update coalescing: at most ``max_rate`` flushes per second, latest value per key wins.

Why: the kernel -> browser path is rate-limited by Jupyter (about 1000 iopub messages per
second in total), so a widget that sets a trait on every incoming message would starve the
others. Each widget model routes its updates through one :class:`Coalescer` and sends the
merged dict :meth:`~Coalescer.poll` returns.

Rules of this module:

* Sans-I/O: the caller passes ``now`` (seconds, monotonic; the injected ``clock`` is used
  when omitted) and calls :meth:`~Coalescer.poll` at :meth:`~Coalescer.next_deadline`.
* Leading edge: the first update after a quiet spell is due immediately; after a flush,
  the next one waits at least ``1 / max_rate`` seconds. So in any window of T seconds there
  are at most ``floor(T * max_rate) + 1`` flushes.
* Nothing is lost: an update is either pending or was flushed, or was superseded by a
  later update of the same key before a flush (counted in ``merged``).
* Not thread-safe: drive one coalescer from one thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ._clock import MonotonicNow

__all__ = ["Coalescer", "CoalescerStats"]


@dataclass(frozen=True)
class CoalescerStats:
    """``updates == merged + flushed_values + pending``."""

    updates: int
    flushes: int
    merged: int
    flushed_values: int
    pending: int


class Coalescer:
    """Merge ``key -> value`` updates and release them at most ``max_rate`` times per second."""

    def __init__(self, max_rate: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(max_rate, bool) or not isinstance(max_rate, (int, float)):
            raise TypeError(f"max_rate must be a number, got {max_rate!r}")
        if not (math.isfinite(max_rate) and max_rate > 0):
            raise ValueError(f"max_rate must be a finite number of flushes per second > 0, got {max_rate}")
        self.max_rate = float(max_rate)
        self.min_interval = 1.0 / self.max_rate
        self._now = MonotonicNow(clock)
        self._pending: dict[Hashable, Any] = {}
        self._pending_since: float | None = None
        self._last_flush: float | None = None
        self._updates = 0
        self._flushes = 0
        self._merged = 0
        self._flushed_values = 0

    def update(self, key: Hashable, value: Any, now: float | None = None) -> None:
        """Record ``key = value``; a pending value for the same key is replaced (merged)."""
        now = self._now.observe(now)
        self._updates += 1
        if key in self._pending:
            self._merged += 1
        self._pending[key] = value
        if self._pending_since is None:
            self._pending_since = now

    def update_many(self, values: Mapping[Hashable, Any], now: float | None = None) -> None:
        """Record several updates at once (same semantics as calling :meth:`update` for each)."""
        now = self._now.observe(now)
        for key, value in values.items():
            self.update(key, value, now)

    def poll(self, now: float | None = None) -> dict[Hashable, Any] | None:
        """Return the merged pending updates if a flush is due, else None."""
        now = self._now.observe(now)
        if not self._pending:
            return None
        # ``now < last + interval`` (not ``now - last < interval``): polling exactly at
        # next_deadline() must succeed despite float rounding.
        if self._last_flush is not None and now < self._last_flush + self.min_interval:
            return None
        return self._take(now)

    def drain(self, now: float | None = None) -> dict[Hashable, Any] | None:
        """Flush whatever is pending regardless of the rate (teardown/close); None if nothing is pending."""
        now = self._now.observe(now)
        return self._take(now) if self._pending else None

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`poll` returns updates; None when nothing is pending."""
        if self._pending_since is None:
            return None
        if self._last_flush is None:
            return self._pending_since
        return max(self._pending_since, self._last_flush + self.min_interval)

    def stats(self) -> CoalescerStats:
        return CoalescerStats(
            updates=self._updates,
            flushes=self._flushes,
            merged=self._merged,
            flushed_values=self._flushed_values,
            pending=len(self._pending),
        )

    def _take(self, now: float) -> dict[Hashable, Any]:
        flushed, self._pending = self._pending, {}
        self._pending_since = None
        self._last_flush = now
        self._flushes += 1
        self._flushed_values += len(flushed)
        return flushed
