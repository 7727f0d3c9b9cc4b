"""``LiveChart``: a numeric stream drawn as a line, paced by a BackpressureBuffer.

Samples come from a :class:`~rtwidgets.models.channel.Channel` (message data: a number,
or a dict with ``y``/``value`` and optional ``t`` in epoch ms) and/or from
:meth:`LiveChart.push` / :meth:`LiveChart.extend` (any thread). They pass through a
:class:`~rtwidgets.core.backpressure.BackpressureBuffer` (strategy ``latest``/``sample``/
``batch``); what it merges or drops is counted and shown.

What the views draw is the retained window decimated to at most ``max_points`` points. It
travels as custom comm messages with little-endian Float64 buffers, one per flush, at most 60
per second and within the process-wide comm message budget shared by all widgets
(:func:`rtwidgets.models._binding.set_message_budget`); a flush sends only what changed:

* ``{"type": "window", "seq": n, "tail", "pressure", "stats"}`` + ``[x, y]``: the whole
  decimated series (the view replaces what it has);
* ``{"type": "append", "seq": n, "drop": k, "tail", "pressure", "stats"}`` + ``[x_new, y_new]``:
  remove the first ``k`` points, then append the new ones;
* ``tail`` is ``[x, y]``, the newest sample when the decimated series does not end with it
  (the line always reaches the newest sample), else ``null``; ``seq`` increases by one per
  message; ``pressure`` and ``stats`` are the values of the Python traits of the same names
  (``stats`` in every window and at most every ``STATS_INTERVAL`` seconds otherwise: a view
  keeps the last one it got).

A view asks ``{"action": "window"}`` when it renders and when it sees a ``seq`` gap (Jupyter
drops iopub messages above its rate limit), and ignores appends until it has a window; the
next flush answers with a ``window`` (to every view: harmless). The series and its messages
(stable decimation with stride hysteresis, window vs append, tail) are the sans-I/O
:class:`rtwidgets.core.series.DecimatedSeries`; this widget feeds it and sends what it says.

The Python traits ``x``, ``y``, ``pressure`` and ``stats`` are not synced (the messages carry
them): ``chart.x`` / ``chart.y`` are read-only Float64 bytes of what the views show after the
last flush (decimated series plus tail). The series is built at flush time
(``CoalescedSync.set_later``), not per incoming burst: each flush first moves every waiting
sample into the buffer and takes everything it releases, so what is sent is as fresh as the
flush itself.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from traitlets import Dict, Float, Unicode

from rtwidgets.core.backpressure import BackpressureBuffer, BackpressureConfig, SamplingStrategy
from rtwidgets.core.rate import AdaptiveRateController, RateControlConfig
from rtwidgets.core.rate_meter import RateMeter
from rtwidgets.core.series import DecimatedSeries, choose_stride, float64_bytes
from rtwidgets.models._binding import DeadlineTimer, LoopClock
from rtwidgets.models.channel import Channel
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets._base import IntentError, RealtimeWidget

__all__ = ["LiveChart", "choose_stride", "float64_bytes"]

# Rates (rate_in / rate_out) are measured over this sliding window, seconds.
RATE_WINDOW = 1.0
# Data messages carry the stats dict at most this often (and always in a window): half of an
# append's bytes at 1 kHz were stats, which nobody reads 60 times a second.
STATS_INTERVAL = 0.25
# Adaptive rate from the views' own frame counts (js/src/lib/frame_meter.js): the chart's
# flush rate follows what the fastest recent view can draw, within the message budget. A view
# whose reports stop for VIEW_STALE seconds no longer counts (a closed tab).
RENDER_RATE = RateControlConfig(
    target_frame_rate=50.0,  # below 45 fps (0.9 x target) a view is not keeping up
    measurement_window=1.0,
    min_rate=2.0,
    max_rate=60.0,
    adjustment_interval=0.5,
    min_samples=10,
    decrease_factor=0.7,
    increase_factor=1.5,  # back from 2/s to 60/s in about 9 reports once the tab is visible
)
VIEW_STALE = 5.0

Sample = tuple[float, float, Hashable]


def _nan_to_none(value: float, _widget: Any) -> float | None:
    # Jupyter's JSON refuses NaN; the front end reads null as "auto".
    return None if value is None or not math.isfinite(value) else value


def _none_to_nan(value: Any, _widget: Any) -> float:
    return float("nan") if value is None else float(value)


class LiveChart(RealtimeWidget):
    """Plot a numeric stream; ``source`` is a :class:`Channel` or ``None`` (use :meth:`push`).

    ``key``: a field name of dict data (or a callable on the data) giving samples a key;
    with strategy ``latest`` a full buffer then replaces the buffered sample of the same key
    (``merged``) instead of dropping the oldest one (``dropped``). ``max_buffer_size`` bounds
    the samples waiting between two flushes (beyond it the strategy sheds load);
    ``batch_interval`` (seconds) is the least time between two releases of the buffer (a
    release hands out everything buffered); ``max_points`` bounds what is sent (tail included).

    What a view shows (``js/src/live_chart.js``, drawn with uPlot): the line over the last
    ``window_ms`` with a time axis, a legend with the newest value and time (the exact value
    and time under the cursor while hovering), drag to zoom (pauses the plot; the "Live" button
    or a double-click resumes). The badge and the counters tell one story: the badge is the
    buffer's state *now* (``pressure``: "keeping up", "buffer filling", "buffer nearly full");
    the stats line is what came in and went out (received, rates in and out); a loss line
    appears only once samples were lost and says how many so far, why and what to change --
    "dropped N of M (buffer full: raise max_buffer_size or lower the rate)", "merged N (a newer
    sample with the same key replaced one)", "invalid N (not a finite number)" -- marked ", now"
    while the count is still growing. So ``keeping up`` next to ``dropped 8589 of 20000`` reads
    as "it lost samples earlier and keeps up now".

    Args:
        source: a :class:`Channel` whose messages are samples (a number, or a dict with ``y``
            or ``value`` and optionally ``t`` in epoch ms), or ``None`` to feed it with
            :meth:`push`/:meth:`extend`. A message without a finite number is counted in
            ``stats['invalid']``.
        key: a field name of dict data, or a callable on the data, giving each sample its
            key (see above); ``None``: samples have no key.
        window_ms: the time window shown, in milliseconds (> 0).
        strategy: how a full buffer sheds load: ``"latest"``, ``"sample"`` or ``"batch"``.
        title: shown above the chart.
        max_buffer_size: samples (an int >= 1) waiting between two flushes.
        batch_interval: seconds (finite, >= 0) between two releases of the buffer.
        max_points: points (an int >= 2) sent to the views; older ones are decimated.
        y_min: the y axis's fixed lower bound (``None``: automatic).
        y_max: the y axis's fixed upper bound (``None``: automatic).
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        TypeError: ``source`` is not a :class:`Channel` or ``None``, ``max_buffer_size`` is not
            an int, or ``key`` is neither a str, a callable nor ``None``.
        ValueError: ``window_ms`` not a positive finite number, ``max_points`` not an int >= 2,
            ``max_buffer_size`` < 1, an unknown ``strategy`` or a bad ``batch_interval``.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

    _bundle = "live_chart"

    title = Unicode("").tag(sync=True)
    window_ms = Float(10_000.0).tag(sync=True)
    # Not synced: they travel inside the data messages (one comm message per flush).
    pressure = Unicode("none")
    stats = Dict()
    y_min = Float(float("nan"), allow_none=True).tag(sync=True, to_json=_nan_to_none, from_json=_none_to_nan)
    y_max = Float(float("nan"), allow_none=True).tag(sync=True, to_json=_nan_to_none, from_json=_none_to_nan)

    def __init__(
        self,
        source: Channel | None = None,
        *,
        key: str | Callable[[Any], Hashable] | None = None,
        window_ms: float = 10_000.0,
        strategy: SamplingStrategy = "latest",
        title: str = "",
        max_buffer_size: int = 1000,
        batch_interval: float = 1 / 60,
        max_points: int = 2000,
        y_min: float | None = None,
        y_max: float | None = None,
        **kwargs: Any,
    ) -> None:
        if source is not None and not isinstance(source, Channel):
            raise TypeError(f"LiveChart source must be a Channel or None, got {type(source).__name__}")
        if not (isinstance(window_ms, (int, float)) and math.isfinite(window_ms) and window_ms > 0):
            raise ValueError(f"window_ms must be a positive number of milliseconds, got {window_ms!r}")
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points must be an int >= 2, got {max_points!r}")
        # BackpressureConfig validates strategy, size and interval with clear messages.
        if isinstance(max_buffer_size, bool) or not isinstance(max_buffer_size, int):
            raise TypeError(f"max_buffer_size must be an int, got {max_buffer_size!r}")
        # Each poll releases everything buffered (batch sizes = buffer size): the buffer's job
        # here is to bound memory and shed load, not to pace. The design's 20/50/100 per poll
        # (at most 6000 samples/s) made a 1 kHz stream queue up and lag by tens of ms.
        batch = max(1, max_buffer_size)
        config = BackpressureConfig(
            max_buffer_size=max_buffer_size,
            sampling_strategy=strategy,
            batch_interval=batch_interval,
            batch_size_none=batch,
            batch_size_moderate=batch,
            batch_size_high=batch,
        )
        self.model = source
        self.max_points = max_points
        self._key = self._key_fn(key)
        self._runtime = get_runtime()
        self._loop = self._runtime.loop
        self._clock = LoopClock(self._loop)
        self._buffer: BackpressureBuffer[Sample] = BackpressureBuffer(
            config, key=(lambda s: s[2]) if key is not None else None
        )
        self._inbox: deque[Sample] = deque()  # any thread appends; the runtime drains
        self._drain_scheduled = threading.Event()
        # What the views hold, and the window/append messages that keep them in step (sans-I/O).
        self._series = DecimatedSeries(max_points)
        # Guards the series between the runtime thread (flush) and x/y readers.
        self._lock = threading.Lock()
        self._invalid = 0
        self._rate_in = RateMeter(RATE_WINDOW, self._clock())
        self._rate_out = RateMeter(RATE_WINDOW, self._clock())
        self._stats_sent_at = float("-inf")  # loop time stats last went out in a data message
        self._render_rate = AdaptiveRateController(RENDER_RATE)
        self._views: dict[str, tuple[float, int, float]] = {}  # view -> (reported at, frames, s)
        super().__init__(
            title=title,
            window_ms=float(window_ms),
            y_min=float("nan") if y_min is None else float(y_min),
            y_max=float("nan") if y_max is None else float(y_max),
            stats=self._stats_dict(),
            **kwargs,
        )
        self._timer = DeadlineTimer(self._loop, self._poll)
        self._on_close(lambda: self._run(self._timer.cancel))
        if source is not None:
            self._on_close(source.on_message(self._on_frame))

    # ------------------------------------------------------------------ Python API

    def push(self, y: float, t: float | None = None, key: Hashable = None) -> None:
        """Add one sample (thread-safe). ``t``: epoch ms, default now.

        Args:
            y: the value (anything ``float()`` accepts).
            t: the sample's time in epoch milliseconds (``None``: now).
            key: the sample's key for ``latest`` merging; used only when the chart was created
                with a ``key``.

        Raises:
            TypeError: ``y`` or ``t`` is not a number (``ValueError`` for a non-numeric str).
        """
        self._inbox.append((time.time() * 1000.0 if t is None else float(t), float(y), key))
        self._schedule_drain()

    def extend(self, values: Iterable[float], t: float | None = None) -> None:
        """Add many samples at time ``t`` (default now), e.g. a block from a sensor thread.

        Args:
            values: the values (each anything ``float()`` accepts); the samples have no key.
            t: their common time in epoch milliseconds (``None``: now).

        Raises:
            TypeError: a value or ``t`` is not a number (``ValueError`` for a non-numeric
                str).
        """
        stamp = time.time() * 1000.0 if t is None else float(t)
        self._inbox.extend((stamp, float(v), None) for v in values)
        self._schedule_drain()

    @property
    def x(self) -> bytes:
        """Float64 LE bytes of the x values (epoch ms) the views show: decimated series + tail."""
        with self._lock:
            return self._series.shown()[0]

    @property
    def y(self) -> bytes:
        """Float64 LE bytes of the y values the views show (same points as :attr:`x`)."""
        with self._lock:
            return self._series.shown()[1]

    @property
    def stride(self) -> int:
        """The decimation stride now in force (1 = every retained sample is sent)."""
        return self._series.stride

    @property
    def windows_sent(self) -> int:
        """Data messages of type ``window`` so far (the rest are appends)."""
        return self._series.windows_sent

    @property
    def flushes(self) -> int:
        """How many data messages went to the browser so far (<= 60 per second, less when many
        widgets share the message budget)."""
        return self._sync.flushes

    @property
    def flush_times(self) -> list[float]:
        """Loop-clock times (seconds) of the last 1000 flushes, for rate checks."""
        return list(self._sync.flush_times)

    @property
    def points(self) -> int:
        """Samples retained in the window (before decimation)."""
        return len(self._series)

    def __repr__(self) -> str:
        source = f"channel={self.model.name!r}" if self.model is not None else "source=push"
        return f"<LiveChart {source} window_ms={self.window_ms:g}>"

    # ------------------------------------------------------------------ ingestion

    def _key_fn(self, key: str | Callable[[Any], Hashable] | None) -> Callable[[Any], Hashable] | None:
        if key is None or callable(key):
            return key
        if isinstance(key, str):
            return lambda data: data.get(key) if isinstance(data, dict) else None
        raise TypeError("key must be a field name, a callable or None")

    def _on_frame(self, frame: dict[str, Any]) -> None:
        # Runtime thread (a channel listener): parse, then into the same inbox as push().
        data = frame.get("data")
        y: Any = data
        t: Any = frame.get("timestamp")
        if isinstance(data, dict):
            y = data.get("y", data.get("value"))
            t = data.get("t", t)
        if isinstance(y, bool) or not isinstance(y, (int, float)) or not math.isfinite(y):
            self._invalid += 1  # counted and shown in stats, never silently ignored
            return
        stamp = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else time.time() * 1000.0
        self._inbox.append((stamp, float(y), self._key(data) if self._key is not None else None))
        self._schedule_drain()

    def _schedule_drain(self) -> None:
        # One hand-off per burst, not per sample: a 10 kHz producer wakes the loop rarely.
        if not self._drain_scheduled.is_set():
            self._drain_scheduled.set()
            self._run(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled.clear()
        if self.closed:
            self._inbox.clear()
            return
        if self._take_inbox(self._clock()):
            self._sync.set_later(self._flush_state)

    def _take_inbox(self, now: float) -> int:
        count = 0
        buffer = self._buffer
        while self._inbox:
            buffer.push(self._inbox.popleft(), now)
            count += 1
        if count:
            self._rate_in.add(count, now)
        return count

    def _poll(self, when: float) -> None:
        # The buffer held samples its batch_interval did not release at the last flush.
        if not self.closed:
            self._sync.set_later(self._flush_state)

    # ------------------------------------------------------------------ views

    def _intent_window(self, _content: dict[str, Any]) -> None:
        """A view (just rendered, or having missed a message) asks for the whole series."""
        self._run(self._want_window)

    def _intent_frames(self, content: dict[str, Any]) -> None:
        """A view's frame report: ``count`` animation frames over ``elapsed_ms``."""
        view, count, elapsed = content.get("view"), content.get("count"), content.get("elapsed_ms")
        if not isinstance(view, str) or not view or len(view) > 64:
            raise IntentError("intent 'frames' needs a string 'view' (at most 64 characters)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise IntentError("intent 'frames' needs an int 'count' >= 0")
        if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not 0 < elapsed < 3.6e6:
            raise IntentError("intent 'frames' needs 'elapsed_ms' > 0")
        self._run(self._on_frames, view, count, float(elapsed) / 1000.0)

    def _on_frames(self, view: str, count: int, elapsed: float) -> None:
        if self.closed:
            return
        now = self._clock()
        self._views[view] = (now, count, elapsed)
        for stale in [v for v, (at, _, _) in self._views.items() if now - at > VIEW_STALE]:
            del self._views[stale]
        # The fastest view decides: a background tab must not slow a visible one.
        _, frames, span = max(self._views.values(), key=lambda r: r[1] / r[2])
        self._render_rate.record_frames(frames, span, now)
        self._sync.set_cap(min(self.max_rate, self._render_rate.current_rate))

    @property
    def render_rate(self) -> float:
        """The flush rate the views can take (what :mod:`rtwidgets.core.rate` allows now)."""
        return self._render_rate.current_rate

    def _want_window(self) -> None:
        if not self.closed:
            with self._lock:
                self._series.want_window()
            # Paced like every data message: the answer is the next flush.
            self._sync.set_later(self._flush_state)

    def _flush_state(self, now: float) -> dict[str, Any]:
        """Send one data message built from the newest samples and return the (unsynced)
        ``pressure``/``stats`` traits; called at flush time by ``CoalescedSync.set_later``, so
        the series is serialized once per flush, not once per incoming burst."""
        now = self._clock(now)
        if self.closed:
            return {}
        self._take_inbox(now)
        batch = self._buffer.poll(now)
        with self._lock:
            if batch:
                self._rate_out.add(len(batch), now)
                self._series.add(((t, value) for t, value, _key in batch), self.window_ms)
            content, buffers = self._series.next_message()
        # Leftovers (batch_interval not elapsed yet): flush again once the buffer allows.
        self._timer.schedule(self._buffer.next_deadline())
        pressure, stats = self._buffer.pressure, self._stats_dict(now)
        content["pressure"] = pressure
        if content["type"] == "window" or now - self._stats_sent_at >= STATS_INTERVAL:
            content["stats"] = stats
            self._stats_sent_at = now
        self.send(content, buffers)
        return {"pressure": pressure, "stats": stats}

    def _stats_dict(self, now: float | None = None) -> dict[str, Any]:
        s = self._buffer.stats()
        return {
            "received": s.pushed,
            "delivered": s.delivered,
            "merged": s.merged,
            "dropped": s.dropped,
            "buffered": s.buffer_size,
            "invalid": self._invalid,
            "rate_in": round(self._rate_in.rate(now), 1) if now is not None else 0.0,
            "rate_out": round(self._rate_out.rate(now), 1) if now is not None else 0.0,
            "view_fps": round(self._render_rate.measured_fps or 0.0, 1) if self._views else None,
            "render_rate": round(self._render_rate.current_rate, 1),
        }
