"""The rate meter: events per second over a sliding window.

The one rate meter of rtwidgets: the live chart's ``rate_in`` / ``rate_out`` and the gateway's
``publish_rate`` both use it.

Rules of this module:

* Sans-I/O: every call takes ``now`` (seconds of one monotonic clock), required; a ``now``
  earlier than one already seen is a ValueError (like every core input).
* The meter keeps marks of the running total: ``(time, total events so far)``. The rate at
  ``now`` is the events since the *baseline* divided by the time since it, where the baseline is
  the newest mark at or before ``now - window`` (or the meter's start when there is none), and
  the time is at least ``window``. So a burst right after the start reads as ``burst / window``
  (never an absurd rate over a tiny span), a steady stream reads as its rate, a stream that stops
  decays to 0, and a meter fed rarely (a counter read at scrape time) averages over the time
  since its last reading older than the window.
* ``resolution`` bounds memory: a mark is only added when the newest one is at least
  ``resolution`` old; the running total is exact whatever the resolution.
* Not thread-safe: drive one meter from one thread.
"""

from __future__ import annotations

import math
from collections import deque

from ._clock import MonotonicNow

__all__ = ["RateMeter"]


class RateMeter:
    """Events per second over the last ``window`` seconds.

    Args:
        window: the averaging window, seconds (finite, > 0).
        now: the meter's start (the first baseline, with 0 events).
        resolution: the least time between two marks, seconds (>= 0; 0 keeps one per call).

    Raises:
        ValueError: ``window`` is not a finite number > 0, or ``resolution`` is negative.
    """

    __slots__ = ("_marks", "_now", "_total", "resolution", "window")

    def __init__(self, window: float, now: float, *, resolution: float = 0.0) -> None:
        if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a finite number of seconds > 0, got {window!r}")
        if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution >= 0):
            raise ValueError(f"resolution must be a finite number of seconds >= 0, got {resolution!r}")
        self.window = float(window)
        self.resolution = float(resolution)
        self._now = MonotonicNow()
        self._now.observe(now)
        self._total = 0
        self._marks: deque[tuple[float, int]] = deque([(float(now), 0)])

    @property
    def total(self) -> int:
        """Events counted since the start."""
        return self._total

    def add(self, count: int, now: float) -> None:
        """Count ``count`` events at ``now``.

        Raises:
            ValueError: ``count`` is negative, or ``now`` is earlier than a time already seen.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self.observe_total(self._total + count, now)

    def observe_total(self, total: int, now: float) -> None:
        """Set the running total to ``total`` at ``now`` (for a counter kept elsewhere).

        Raises:
            ValueError: ``total`` is below the current total, or ``now`` is earlier than a time
                already seen.
        """
        if total < self._total:
            raise ValueError(f"a running total cannot go down: {total} < {self._total}")
        now = self._now.observe(now)
        self._total = total
        if now - self._marks[-1][0] >= self.resolution:
            self._marks.append((now, total))
        self._trim(now)

    def rate(self, now: float) -> float:
        """Events per second at ``now`` (see the module rules for the estimate).

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        self._trim(now)
        since, total_then = self._marks[0]
        return (self._total - total_then) / max(self.window, now - since)

    def _trim(self, now: float) -> None:
        # Keep exactly one mark at or before the cutoff: the baseline.
        cutoff = now - self.window
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= cutoff:
            marks.popleft()
