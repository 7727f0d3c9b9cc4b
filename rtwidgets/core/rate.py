"""Adaptive rate control: measure the consumer's frame rate, lower the message rate when it lags.

Rules of this module:

* Sans-I/O. The caller reports each rendered frame with :meth:`AdaptiveRateController.record_frame`
  (instead of the design's ``requestAnimationFrame`` loop) and asks
  :meth:`~AdaptiveRateController.should_process` before handling a message. Times are
  seconds from a monotonic clock, passed as ``now`` (required: a controller reads no clock);
  a ``now`` earlier than one already seen is a ValueError.
* Not thread-safe: drive one controller from one thread.

Functional spec: the design's ``AdaptiveRateController`` (docs/design.md#adaptive-rate): every
``adjustment_interval`` (0.5 s), if at least ``min_samples`` (10) frames are in the window,
the rate is multiplied by 0.8 when fps < 0.9 x target, and by 1.1 (up to ``max_rate``) when
throttling and fps > 0.95 x target; throttling ends when the rate is back at ``max_rate``.
Fixes:

* The design trimmed its window with ``now - frameTimings[0] > cutoff``, comparing a frame
  *duration* with a *timestamp* (``cutoff = now - window``), so it trimmed nothing useful.
  Here each sample keeps its timestamp and samples older than ``now - measurement_window``
  are dropped.
* ``shouldProcess`` was a probabilistic placeholder (``Math.random() < rate/1000``, which is
  per-call, not per-second). Here it is a real token bucket
  (:class:`~rtwidgets.core.token_bucket.TokenBucket`) refilled at ``current_rate`` tokens per
  second, holding at most ``burst`` tokens.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ._clock import MonotonicNow
from .token_bucket import TokenBucket

__all__ = ["AdaptiveRateController", "RateControlConfig"]


@dataclass(frozen=True)
class RateControlConfig:
    """Tuning. Rates are messages per second; times are seconds."""

    target_frame_rate: float = 60.0
    measurement_window: float = 1.0
    min_rate: float = 10.0
    max_rate: float = 1000.0
    adjustment_interval: float = 0.5
    min_samples: int = 10
    decrease_factor: float = 0.8
    increase_factor: float = 1.1
    # Token-bucket capacity: how many messages may pass back to back after an idle spell.
    burst: float = 1.0

    def __post_init__(self) -> None:
        positive = ("target_frame_rate", "measurement_window", "min_rate", "max_rate", "adjustment_interval")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.min_rate > self.max_rate:
            raise ValueError(f"min_rate ({self.min_rate}) must be <= max_rate ({self.max_rate})")
        samples = self.min_samples
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"min_samples must be an int >= 1, got {self.min_samples!r}")
        if not 0 < self.decrease_factor < 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {self.decrease_factor}")
        if not self.increase_factor > 1:
            raise ValueError(f"increase_factor must be > 1, got {self.increase_factor}")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError(f"burst must be a finite number >= 1 (one message), got {self.burst}")


class AdaptiveRateController:
    """Frame-rate-driven message rate with a token bucket gate. Starts at ``max_rate``, full bucket."""

    def __init__(self, config: RateControlConfig | None = None) -> None:
        self.config = config if config is not None else RateControlConfig()
        self._now = MonotonicNow()
        self._rate = float(self.config.max_rate)
        self._throttling = False
        # (frame end timestamp, frame duration) pairs inside the measurement window.
        self._frames: deque[tuple[float, float]] = deque()
        self._last_frame: float | None = None
        self._last_adjustment: float | None = None
        # Created full at the first should_process(): until then no time base is known.
        self._bucket: TokenBucket | None = None

    @property
    def current_rate(self) -> float:
        """The allowed message rate (messages per second), within [min_rate, max_rate]."""
        return self._rate

    @property
    def is_under_pressure(self) -> bool:
        """True while throttling (the rate was lowered and has not recovered to max_rate)."""
        return self._throttling

    @property
    def measured_fps(self) -> float | None:
        """Frames per second over the current window, or None before two frames were seen."""
        if not self._frames:
            return None
        # Summed afresh (a window holds only window x fps samples) so no float drift builds up.
        average = sum(duration for _, duration in self._frames) / len(self._frames)
        return math.inf if average <= 0 else 1.0 / average

    def record_frame(self, now: float) -> None:
        """Report one frame rendered at ``now``; may adjust :attr:`current_rate`.

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        if self._last_frame is not None:
            self._frames.append((now, now - self._last_frame))
        self._last_frame = now
        cutoff = now - self.config.measurement_window
        while self._frames and self._frames[0][0] < cutoff:
            self._frames.popleft()
        self._adjust(now)

    def record_frames(self, count: int, elapsed: float, now: float) -> None:
        """Report ``count`` frames rendered evenly over the ``elapsed`` seconds ending at ``now``
        (a remote consumer, e.g. a browser view, that reports its frames in batches). Each batch
        is one whole measurement and adjusts :attr:`current_rate` once (not limited by
        ``adjustment_interval``, which paces per-frame reports). ``count == 0`` over ``elapsed``
        is a stall: it counts as frames of ``elapsed`` seconds each (at least ``min_samples`` of
        them), so a view that stopped drawing (a background tab) lowers the rate too.

        Raises:
            ValueError: ``count`` is negative or ``elapsed`` is not a positive finite number.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        if not (isinstance(elapsed, (int, float)) and math.isfinite(elapsed) and elapsed > 0):
            raise ValueError(f"elapsed must be a finite number of seconds > 0, got {elapsed!r}")
        now = self._now.observe(now)
        # A batch says enough to judge: at least min_samples samples of the measured duration.
        duration = float(elapsed) if count == 0 else elapsed / count
        durations = [duration] * max(count, self.config.min_samples)
        start = now - elapsed
        self._frames.clear()  # the batch is the window's whole story: no mixing with older clocks
        t = start
        for duration in durations:
            t += duration
            self._frames.append((min(t, now), duration))
        self._last_frame = now
        self._adjust(now, batch=True)

    def should_process(self, now: float) -> bool:
        """Take one token if available at ``now``: True means handle the message now, False
        means defer or drop.

        Raises:
            ValueError: ``now`` is earlier than a time already seen.
        """
        now = self._now.observe(now)
        if self._bucket is None:
            self._bucket = TokenBucket(self._rate, self.config.burst, now)
        return self._bucket.try_acquire(now)

    def next_deadline(self) -> float | None:
        """When the next token is available (a past time if one is available now); None before first use."""
        return None if self._bucket is None else self._bucket.next_deadline()

    # ------------------------------------------------------------------ internals

    def _adjust(self, now: float, *, batch: bool = False) -> None:
        # A batch report is one whole measurement: it adjusts once, whatever the interval.
        last = self._last_adjustment
        if not batch and last is not None and now - last < self.config.adjustment_interval:
            return
        self._last_adjustment = now
        if len(self._frames) < self.config.min_samples:
            return
        fps = self.measured_fps
        assert fps is not None
        target = self.config.target_frame_rate
        if fps < target * 0.9:
            self._set_rate(now, max(self.config.min_rate, self._rate * self.config.decrease_factor))
            self._throttling = True
        elif fps > target * 0.95 and self._throttling:
            self._set_rate(now, min(self.config.max_rate, self._rate * self.config.increase_factor))
            if self._rate >= self.config.max_rate:
                self._throttling = False

    def _set_rate(self, now: float, rate: float) -> None:
        # Tokens earned so far accrue at the old rate; the new rate applies from now on.
        if self._bucket is not None:
            self._bucket.set_rate(rate, now)
        self._rate = rate
