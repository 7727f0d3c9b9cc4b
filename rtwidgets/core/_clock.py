"""Resolve ``now`` for the sans-I/O cores and refuse time that runs backwards.

The cores (backpressure, coalescing, ordering, rate control) take an optional ``now`` on
every call and fall back to an injected clock. They all need the same guard: a ``now``
earlier than one already seen would corrupt their deadlines, so it is an error rather than
something to clamp silently.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MonotonicNow"]


class MonotonicNow:
    """Hands out non-decreasing times: the caller's ``now`` or, when omitted, ``clock()``."""

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last: float | None = None

    @property
    def last(self) -> float | None:
        """The latest time observed, or None before the first call to :meth:`observe`."""
        return self._last

    def observe(self, now: float | None = None) -> float:
        """Return ``now`` (``clock()`` when None) and remember it.

        Raises ValueError when it is earlier than the previous observed time.
        """
        if now is None:
            now = self._clock()
        if self._last is not None and now < self._last:
            raise ValueError(f"time went backwards: now={now} < previous now={self._last}")
        self._last = now
        return now
