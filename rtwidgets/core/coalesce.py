"""Widget update coalescing: at most ``max_rate`` flushes per second, latest value per key wins.

Why: the kernel -> browser path is rate-limited by Jupyter (about 1000 iopub messages per
second in total), so a widget that sets a trait on every incoming message would starve the
others. Each widget model routes its updates through one :class:`Coalescer` and sends the
merged dict :meth:`~Coalescer.poll` returns.

Rules of this module:

* Sans-I/O: the caller passes ``now`` (seconds, monotonic, required: a coalescer reads no
  clock) and calls :meth:`~Coalescer.poll` at :meth:`~Coalescer.next_deadline`. A ``now``
  earlier than one already seen is a ValueError.
* Leading edge: the first update after a quiet spell is due immediately; after a flush,
  the next one waits at least ``1 / max_rate`` seconds. So in any window of T seconds there
  are at most ``floor(T * max_rate) + 1`` flushes.
* Nothing is lost: an update is either pending or was flushed, or was superseded by a
  later update of the same key before a flush (counted in ``merged``).
* Not thread-safe: drive one coalescer from one thread.
* A per-widget cap cannot bound the total: Jupyter's limit is per kernel, so N widgets at
  60/s each overflow it. :class:`RateBudget` shares one process-wide rate among all live
  coalescers (max-min fair, each capped at its own ``max_rate``); the caller applies a
  member's share with :meth:`Coalescer.set_max_rate` whenever :attr:`RateBudget.version` moves.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ._clock import MonotonicNow

__all__ = ["Coalescer", "CoalescerStats", "RateBudget"]


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

    def __init__(self, max_rate: float = 60.0) -> None:
        self.max_rate = _check_rate("max_rate", max_rate)
        self.min_interval = 1.0 / self.max_rate
        self._now = MonotonicNow()
        self._pending: dict[Hashable, Any] = {}
        self._pending_since: float | None = None
        self._last_flush: float | None = None
        self._updates = 0
        self._flushes = 0
        self._merged = 0
        self._flushed_values = 0

    def set_max_rate(self, max_rate: float) -> None:
        """Change the flush rate; it applies from the last flush on (pending updates are kept).

        Lowering it delays the next flush to ``last_flush + 1 / max_rate``; raising it may
        make a pending flush due at once.
        """
        self.max_rate = _check_rate("max_rate", max_rate)
        self.min_interval = 1.0 / self.max_rate

    def update(self, key: Hashable, value: Any, now: float) -> None:
        """Record ``key = value`` at ``now``; a pending value for the same key is replaced (merged).

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        self._updates += 1
        if key in self._pending:
            self._merged += 1
        self._pending[key] = value
        if self._pending_since is None:
            self._pending_since = now

    def update_many(self, values: Mapping[Hashable, Any], now: float) -> None:
        """Record several updates at once (same semantics as calling :meth:`update` for each)."""
        now = self._now.observe(now)
        for key, value in values.items():
            self.update(key, value, now)

    def poll(self, now: float) -> dict[Hashable, Any] | None:
        """Return the merged pending updates if a flush is due at ``now``, else None.

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        if not self._pending:
            return None
        # ``now < last + interval`` (not ``now - last < interval``): polling exactly at
        # next_deadline() must succeed despite float rounding.
        if self._last_flush is not None and now < self._last_flush + self.min_interval:
            return None
        return self._take(now)

    def drain(self, now: float) -> dict[Hashable, Any] | None:
        """Flush whatever is pending regardless of the rate (teardown/close); None if nothing is pending.

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
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


def _check_rate(name: str, rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise TypeError(f"{name} must be a number, got {rate!r}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"{name} must be a finite number of flushes per second > 0, got {rate}")
    return float(rate)


class RateBudget:
    """Share ``total_rate`` flushes per second among members, max-min fair.

    Each member joins with its own cap (``max_rate``) and gets
    ``min(max_rate, level)``, where the water level is the largest value for which the shares
    sum to at most ``total_rate`` (``inf`` when every cap fits). So with caps of 60 and a total
    of 800, up to 13 members get 60/s each, and 20 members get 40/s each. The sum of shares is
    never above ``total_rate``; with each member's :class:`Coalescer` at its share, any window
    of T seconds holds at most ``T * total_rate + members`` flushes in total (one leading-edge
    flush per member). :attr:`version` increases whenever shares may have changed, so members
    can re-read their share cheaply. Not thread-safe (the caller locks).

    A member marked idle (:meth:`set_idle`: nothing to send for a while) counts with the cap
    ``min(max_rate, idle_rate)``, so busy members share what idle ones do not use; an idle
    member that gets something to send marks itself busy again (its first flush is not
    delayed: a :class:`Coalescer` flushes at once after a quiet spell).
    """

    def __init__(self, total_rate: float = 800.0, idle_rate: float = 4.0) -> None:
        self._total = _check_rate("total_rate", total_rate)
        self._idle_rate = _check_rate("idle_rate", idle_rate)
        self._idle: set[int] = set()
        self._caps: dict[int, float] = {}
        self._next_id = 0
        self._level = math.inf
        self.version = 0

    @property
    def total_rate(self) -> float:
        """Flushes per second shared by all members."""
        return self._total

    def set_total_rate(self, total_rate: float) -> None:
        """Change the shared total; every member's share is recomputed."""
        self._total = _check_rate("total_rate", total_rate)
        self._recompute()

    def join(self, max_rate: float) -> int:
        """Add a member capped at ``max_rate`` flushes/s; return its id (for :meth:`share`/:meth:`leave`)."""
        cap = _check_rate("max_rate", max_rate)
        member = self._next_id
        self._next_id += 1
        self._caps[member] = cap
        self._recompute()
        return member

    def set_cap(self, member: int, max_rate: float) -> None:
        """Change a member's own cap (e.g. a widget whose views cannot draw faster); the shares
        are recomputed. Unknown ids raise KeyError."""
        if member not in self._caps:
            raise KeyError(f"RateBudget: no member {member!r} (already left?)")
        cap = _check_rate("max_rate", max_rate)
        if cap != self._caps[member]:
            self._caps[member] = cap
            self._recompute()

    def leave(self, member: int) -> None:
        """Remove a member; its share goes back to the others. Unknown ids raise KeyError."""
        if member not in self._caps:
            raise KeyError(f"RateBudget: no member {member!r} (already left?)")
        del self._caps[member]
        self._idle.discard(member)
        self._recompute()

    def set_idle(self, member: int, idle: bool) -> None:
        """Mark a member idle (it counts with ``min(max_rate, idle_rate)``) or busy again."""
        if member not in self._caps:
            raise KeyError(f"RateBudget: no member {member!r} (already left?)")
        if idle == (member in self._idle):
            return
        if idle:
            self._idle.add(member)
        else:
            self._idle.discard(member)
        self._recompute()

    def is_idle(self, member: int) -> bool:
        """Whether ``member`` is marked idle."""
        return member in self._idle

    def _cap(self, member: int) -> float:
        cap = self._caps[member]
        return min(cap, self._idle_rate) if member in self._idle else cap

    def share(self, member: int) -> float:
        """The member's current rate: ``min(its cap, water level)``, always > 0 (the cap is
        ``max_rate``, or ``min(max_rate, idle_rate)`` while idle)."""
        if member not in self._caps:
            raise KeyError(f"RateBudget: no member {member!r} (already left?)")
        return min(self._cap(member), self._level)

    def __len__(self) -> int:
        return len(self._caps)

    def _recompute(self) -> None:
        # Water-filling: members whose cap is under the fair share of what is left keep their
        # cap; the rest split the remainder equally.
        remaining = self._total
        left = len(self._caps)
        level = math.inf
        for cap in sorted(self._cap(m) for m in self._caps):
            fair = remaining / left
            if cap > fair:
                level = fair
                break
            remaining -= cap
            left -= 1
        self._level = level
        self.version += 1
