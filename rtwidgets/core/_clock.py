"""Refuse time that runs backwards, for the sans-I/O cores.

Every time-dependent input of a core takes ``now`` (required: a core reads no clock). The cores
all need the same guard on it: a ``now`` earlier than one already seen would corrupt their
deadlines, so it is an error rather than something to clamp silently.
"""

from __future__ import annotations

__all__ = ["MonotonicNow"]


class MonotonicNow:
    """Checks that the caller's ``now`` values never decrease, and remembers the latest."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: float | None = None

    @property
    def last(self) -> float | None:
        """The latest time observed, or None before the first call to :meth:`observe`."""
        return self._last

    def observe(self, now: float) -> float:
        """Return ``now`` and remember it.

        Raises:
            ValueError: ``now`` is earlier than the previous observed time.
        """
        if self._last is not None and now < self._last:
            raise ValueError(f"time went backwards: now={now} < previous now={self._last}")
        self._last = now
        return now
