"""The token bucket: ``rate`` tokens per second refill a bucket of at most ``burst`` tokens.

The one bucket of rtwidgets: the gateway's per-connection publish limit
(:mod:`rtwidgets.gateway.ratelimit`) and the adaptive rate controller's gate
(:class:`~rtwidgets.core.rate.AdaptiveRateController`) both build on it.

Rules of this module:

* Sans-I/O: every time-dependent call takes ``now`` (seconds of one monotonic clock), required.
* Clock policy: a ``now`` earlier than the latest one seen adds nothing (no time passed) and is
  otherwise served normally; it never refills and never raises. The bucket is fed readings
  taken at different points of an event loop (a reading taken before an ``await`` may arrive
  after a later one), and refusing those would turn a harmless reordering into an error. Cores
  that must refuse time running backwards check it at their own inputs
  (:class:`~rtwidgets.core._clock.MonotonicNow`) before the bucket sees it.
* Floating point: a bucket refilled over exactly one token's interval can land a hair below
  one token; amounts within ``1e-9`` of what is asked count as enough.
* Not thread-safe: drive one bucket from one thread.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]

# Tolerance when comparing the tokens held with the tokens asked for (see the module rules).
_EPSILON = 1e-9


def _check_positive(name: str, value: float) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class TokenBucket:
    """``rate`` tokens per second refill a bucket holding at most ``burst`` tokens; starts full.

    :meth:`try_acquire` never blocks: it either takes the tokens and returns True, or takes
    nothing and returns False.

    Args:
        rate: tokens added per second (finite, > 0).
        burst: the bucket's capacity, and what it holds at ``now`` (finite, > 0).
        now: the time the bucket starts at.

    Raises:
        ValueError: ``rate`` or ``burst`` is not a finite number > 0.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = _check_positive("rate", rate)
        self.burst = _check_positive("burst", burst)
        self._tokens = self.burst
        self._last = float(now)

    @property
    def last(self) -> float:
        """The latest time the bucket was refilled to."""
        return self._last

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:  # an earlier reading adds nothing (module rules)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now

    def try_acquire(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if they are available at ``now``; True when taken."""
        self._refill(now)
        if self._tokens >= cost - _EPSILON:
            self._tokens = max(0.0, self._tokens - cost)
            return True
        return False

    def available(self, now: float) -> float:
        """Tokens available at ``now`` (for stats and tests)."""
        self._refill(now)
        return self._tokens

    def retry_after(self, now: float, cost: float = 1.0) -> float:
        """Seconds from ``now`` until ``cost`` tokens will be available (0 if they are now)."""
        self._refill(now)
        missing = cost - self._tokens
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def next_deadline(self, cost: float = 1.0) -> float:
        """When ``cost`` tokens will be available, at the current rate (:attr:`last` if they are)."""
        missing = cost - self._tokens
        return self._last if missing <= _EPSILON else self._last + missing / self.rate

    def set_rate(self, rate: float, now: float) -> None:
        """Change the refill rate from ``now`` on; tokens earned until ``now`` accrue at the old rate.

        Raises:
            ValueError: ``rate`` is not a finite number > 0.
        """
        rate = _check_positive("rate", rate)
        self._refill(now)
        self.rate = rate
