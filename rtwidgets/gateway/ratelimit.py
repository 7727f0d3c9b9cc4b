"""Token bucket rate limiter (sans-I/O: the caller passes the clock reading)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second refill a bucket holding at most ``burst`` tokens.

    Starts full. :meth:`try_acquire` never blocks: it either takes the tokens and
    returns True, or takes nothing and returns False. ``now`` is any monotonic clock
    in seconds; readings that go backwards are treated as no time passing.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now

    def try_acquire(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if available at time ``now``."""
        self._refill(now)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def available(self, now: float) -> float:
        """Tokens available at time ``now`` (for stats and tests)."""
        self._refill(now)
        return self._tokens

    def retry_after(self, now: float, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens will be available (0 if they are now)."""
        self._refill(now)
        missing = cost - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate
