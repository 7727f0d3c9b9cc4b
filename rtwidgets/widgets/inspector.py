"""``Inspector``: a live table of a connection's internals, small charts of them over the last
minute, and a log of its events.

Rules of this module:

* The snapshot is rebuilt on a runtime timer (every :data:`REFRESH_INTERVAL`) and after each
  structural event; the log holds the last :data:`MAX_EVENTS` events. Everything goes through
  the widget's coalescer like every update (the shared message budget).
* The charts (RTT, frames in and out per second, outbound queue) take one point per timer tick
  from the same ``stats()`` read as the snapshot, into a bounded ring (:class:`InspectorSeries`,
  :data:`CHART_POINTS` points). They add no comm message: the points ride in the tick's own
  ``set()``, as ``tail`` (the points since the ring was last sent whole, cumulative so a
  coalesced flush loses none) and, every :data:`CHART_FULL_REFRESH` seconds, ``history`` (the
  whole ring, for views opened later). A view shows ``history`` + ``tail``.
* An idle connection costs little: a tick whose snapshot is unchanged and whose point only moves
  the time (no frames, the same RTT and queue) sends nothing (before the charts, such a tick sent
  nothing either); its points go with the next tick that sends, or after
  :data:`CHART_IDLE_SEND` seconds at the latest (the charts keep scrolling).
* Rates come from the frame counters' differences over the loop clock between two ticks; a
  counter that went down (a new client) gives no rate for that interval (``None``), never a
  negative one.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import orjson
from traitlets import Dict, Float, List

from rtwidgets.models._binding import DeadlineTimer
from rtwidgets.models.connection import Connection
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets._base import RealtimeWidget

__all__ = ["CHART_POINTS", "CHART_SERIES", "MAX_EVENTS", "Inspector", "InspectorSeries", "describe_event"]

MAX_EVENTS = 100
REFRESH_INTERVAL = 0.5
CHART_POINTS = 121  # one minute at REFRESH_INTERVAL, both ends included
CHART_WINDOW = (CHART_POINTS - 1) * REFRESH_INTERVAL  # seconds across a chart
CHART_FULL_REFRESH = 10.0  # seconds between two sends of the whole ring
CHART_IDLE_SEND = 2.0  # an idle connection's points are sent at least this often (seconds)
# Chart columns besides "t": RTT (ms, None while unknown), frames in and out per second, and the
# outbound queue (operations waiting to be sent).
CHART_SERIES: tuple[str, ...] = ("rtt_ms", "in_rate", "out_rate", "queue_size")
_PRESSURE_ORDER = {"none": 0, "moderate": 1, "high": 2}
_SNAPSHOT_EVENTS = frozenset({"StateChanged", "Connected", "SubscriptionChanged", "Error", "Reset"})


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_event(ev: Any) -> tuple[str, str, str] | None:
    """``(dir, type, summary)`` for a client event, or None for events not worth a log line.

    ``dir`` is ``in`` (a frame from the gateway), ``out`` (a frame we sent) or ``local``
    (a state change decided on this side).
    """
    name = type(ev).__name__
    if name == "Message":
        frame = ev.frame
        channel = frame.get("channel")
        where = f"#{channel} " if channel else ""
        if frame.get("type") == "message":
            return "in", "message", f"{where}{frame.get('senderId', '?')}: {_short(frame.get('data'))}"
        return (
            "in",
            str(frame.get("type")),
            f"{where}{_short({k: v for k, v in frame.items() if k != 'type'})}",
        )
    if name == "AckReceived":
        return (
            "in",
            "ack",
            f"{ev.op.type} acknowledged {_short({k: v for k, v in ev.frame.items() if k != 'type'})}",
        )
    if name == "Sent":
        return "out", ev.op.type, _short(ev.op.frame.get("channel") or "")
    if name == "SendFailed":
        return "local", "send_failed", f"{ev.op.type}: {ev.code} ({ev.reason})"
    if name == "StateChanged":
        reason = f" ({ev.reason})" if ev.reason else ""
        return "local", "state", f"{ev.previous.value} → {ev.current.value}{reason}"
    if name == "Connected":
        return (
            "in",
            "connected",
            f"client {ev.client_id} user {ev.user_id}" + (" (resumed)" if ev.resumed else ""),
        )
    if name == "Error":
        return "local", "error", f"{ev.code}: {ev.message}"
    if name == "QueueOverflow":
        return "local", "queue_overflow", f"offline queue full ({ev.limit}); {ev.op.type} refused"
    if name == "OpenSocket":
        return "out", "open", f"opening socket (attempt {ev.attempt})"
    if name == "CloseSocket":
        return "out", "close", f"closing socket: {ev.code} {ev.reason}"
    if name == "Duplicate":
        return "local", "duplicate", f"#{ev.channel} dropped duplicate offset {ev.frame.get('offset')}"
    if name == "Gap":
        return "local", "gap", f"#{ev.channel} expected offset {ev.expected}, got {ev.got}"
    if name == "Reset":
        return "local", "reset", f"#{ev.channel} history lost: rebuilt from snapshot at offset {ev.offset}"
    if name == "SubscriptionChanged":
        return "local", "subscription", f"#{ev.channel} {ev.previous.value} → {ev.current.value}"
    return None  # ChannelMessage / presence events repeat a frame already logged as "in"


def _round(value: float) -> float:
    # Four significant digits are plenty for a sparkline and keep each update small.
    if value == 0 or not math.isfinite(value):
        return 0.0
    return float(f"{value:.4g}")


class InspectorSeries:
    """The last ``max_points`` chart points of a connection (pure: times are passed in).

    :meth:`add` takes the connection's ``stats()`` at ``now`` (a monotonic clock, for the rates)
    and ``wall`` (unix seconds, for the time axis).

    Args:
        max_points: how many points to keep (>= 2).

    Raises:
        ValueError: ``max_points`` < 2.
    """

    def __init__(self, max_points: int = CHART_POINTS) -> None:
        if max_points < 2:
            raise ValueError(f"max_points must be >= 2, got {max_points}")
        self.max_points = max_points
        self._points: deque[dict[str, float | None]] = deque(maxlen=max_points)
        self._last: tuple[float, int, int] | None = None  # (now, frames received, frames sent)

    def __len__(self) -> int:
        return len(self._points)

    def add(self, stats: dict[str, Any], now: float, wall: float) -> None:
        """Append the point of ``stats`` taken at ``now``.

        Args:
            stats: the connection's ``stats()`` (``rtt`` in seconds or None, ``frames_received``,
                ``frames_sent``, ``queue_size``); missing values count as unknown / 0.
            now: monotonic seconds, later than the previous point's.
            wall: unix seconds of the point (its place on the time axis).

        Raises:
            ValueError: ``now`` is not later than the previous point's.
        """
        received = int(stats.get("frames_received") or 0)
        sent = int(stats.get("frames_sent") or 0)
        rates: dict[str, float | None] = {"in_rate": None, "out_rate": None}
        if self._last is not None:
            before, old_in, old_out = self._last
            dt = now - before
            if not dt > 0:
                raise ValueError(f"points must move forward in time: {now} after {before}")
            if received >= old_in and sent >= old_out:  # else a new client: not known
                rates = {"in_rate": (received - old_in) / dt, "out_rate": (sent - old_out) / dt}
        self._last = (now, received, sent)
        rtt = stats.get("rtt")
        rtt_ms: float | None = None
        if isinstance(rtt, (int, float)) and not isinstance(rtt, bool) and math.isfinite(rtt):
            rtt_ms = _round(rtt * 1000.0)
        point: dict[str, float | None] = {
            "t": round(wall, 3),
            "rtt_ms": rtt_ms,
            "queue_size": float(int(stats.get("queue_size") or 0)),
        }
        point.update({k: None if v is None else _round(v) for k, v in rates.items()})
        self._points.append(point)

    def newest_is_flat(self) -> bool:
        """The newest point only moved the time: no frames in or out, RTT and queue as before."""
        if len(self._points) < 2:
            return False
        prev, new = self._points[-2], self._points[-1]
        return (
            new["in_rate"] == 0
            and new["out_rate"] == 0
            and all(new[k] == prev[k] for k in ("rtt_ms", "queue_size"))
        )

    def columns(self, last: int | None = None) -> dict[str, list[float | None]]:
        """The points as ``{"t": [...], <series>: [...]}``, oldest first; only the ``last`` ones
        when given."""
        points = list(self._points)
        if last is not None:
            points = points[max(0, len(points) - last) :] if last > 0 else []
        return {name: [p.get(name) for p in points] for name in ("t", *CHART_SERIES)}


class Inspector(RealtimeWidget):
    """Shows what a :class:`~rtwidgets.models.connection.Connection` is doing: a table of its
    state, small live charts of its RTT, frames in and out per second and outbound queue over the
    last minute, its channels, and a log of its events.

    Synced traits: ``snapshot`` (the table), ``events`` (the log), ``history`` (the chart
    columns, sent whole every ``CHART_FULL_REFRESH`` seconds) and ``tail`` (the points since;
    show both), ``chart_window`` (seconds across a chart).

    Args:
        connection: the connection to inspect.
        **kwargs: further widget traits (e.g. ``layout``), passed to ``anywidget.AnyWidget``.

    Raises:
        TypeError: ``connection`` is not a ``Connection``.
        BundleMissingError: the widget's JavaScript bundle has not been built.
    """

    _bundle = "inspector"

    snapshot = Dict().tag(sync=True)
    events: List[dict[str, Any]] = List().tag(sync=True)
    history = Dict().tag(sync=True)
    tail = Dict().tag(sync=True)
    chart_window = Float(CHART_WINDOW).tag(sync=True)

    def __init__(self, connection: Connection, **kwargs: Any) -> None:
        if not isinstance(connection, Connection):
            raise TypeError(f"Inspector needs an rtwidgets Connection, got {type(connection).__name__}")
        self.connection = connection
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._errors = 0
        self._series = InspectorSeries(CHART_POINTS)
        self._full_every = max(1, math.ceil(CHART_FULL_REFRESH / REFRESH_INTERVAL))
        self._since_full = 0  # points added since history was last sent whole
        self._idle_every = max(1, math.ceil(CHART_IDLE_SEND / REFRESH_INTERVAL))
        self._unsent = 0  # idle ticks whose points were not sent yet
        self._last_snapshot: dict[str, Any] | None = None
        empty = self._series.columns()
        super().__init__(snapshot=self._build_snapshot(), history=empty, tail=empty, **kwargs)
        loop = get_runtime().loop
        self._timer = DeadlineTimer(loop, self._on_timer)
        self._on_close(lambda: self._run(self._timer.cancel))
        self._run(self._start)

    def __repr__(self) -> str:
        return f"<Inspector user={self.connection.user_id!r}>"

    # ------------------------------------------------------------------ runtime thread

    def _start(self) -> None:
        if self.closed:
            return
        self._on_close(self.connection.client.on_event(self._on_event))
        self._timer.schedule(get_runtime().loop.time() + REFRESH_INTERVAL)

    def points(self) -> dict[str, list[float | None]]:
        """The chart points now, as ``history`` + ``tail`` show them (``{"t": [...], ...}``)."""
        history, tail = self.history, self.tail
        newest = history.get("t", [])[-1:] or [-math.inf]
        keep = [i for i, t in enumerate(tail.get("t", [])) if t > newest[0]]
        return {
            name: (list(history.get(name, [])) + [tail[name][i] for i in keep])[-CHART_POINTS:]
            for name in ("t", *CHART_SERIES)
        }

    def _on_timer(self, now: float) -> None:
        if self.closed:
            return
        stats = self._stats()
        self._series.add(stats, now, time.time())
        self._timer.schedule(now + REFRESH_INTERVAL)
        self._since_full += 1
        snapshot = self._build_snapshot(stats)
        full = self._since_full >= self._full_every
        idle = snapshot == self._last_snapshot and self._series.newest_is_flat()
        self._last_snapshot = snapshot
        if idle and not full and self._unsent + 1 < self._idle_every:
            self._unsent += 1  # nothing to show but the time: these points go with a later tick
            return
        self._unsent = 0
        charts: dict[str, Any] = {}
        if full:
            self._since_full = 0
            charts["history"] = self._series.columns()
        # One set() per tick: the chart points ride with the snapshot (one batch, one message).
        self._sync.set(snapshot=snapshot, tail=self._series.columns(last=self._since_full), **charts)

    def _on_event(self, ev: Any) -> None:
        if self.closed:
            return
        name = type(ev).__name__
        if name in ("Error", "SendFailed", "QueueOverflow"):
            self._errors += 1
        described = describe_event(ev)
        if described is None:
            return
        direction, etype, summary = described
        entry = {"ts": round(time.time() * 1000.0, 3), "dir": direction, "type": etype, "summary": summary}
        self._events.append(entry)
        if name in _SNAPSHOT_EVENTS:
            # Structural changes show at once; counters follow on the 0.5 s timer.
            self._sync.set(events=list(self._events), snapshot=self._build_snapshot())
        else:
            self._sync.set(events=list(self._events))

    def _stats(self) -> dict[str, Any]:
        try:
            return dict(self.connection.stats())
        except Exception:  # a client torn down under us: show the model's view
            return {}

    def _build_snapshot(self, stats: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = self.connection
        if stats is None:
            stats = self._stats()
        models = list(conn.attached)
        channel_models = {m.name: m for m in models if type(m).__name__ == "Channel"}
        pending_ops = sum(len(m.pending_ops) for m in models if type(m).__name__ == "OptimisticList")
        pressure = max(
            (getattr(m, "pressure", "none") for m in channel_models.values()),
            key=lambda p: _PRESSURE_ORDER.get(p, 0),
            default="none",
        )
        channels = []
        for name, handle in sorted(conn.client.channels.items()):
            model = channel_models.get(name)
            status = getattr(handle.status, "value", str(handle.status))
            channels.append(
                {
                    "name": name,
                    "subscribed": status == "subscribed",
                    "last_event_id": handle.last_event_id or "",
                    "epoch": handle.epoch or "",
                    "members": len(handle.members),
                    "buffered": int(model.buffer_stats.get("buffered", 0)) if model is not None else 0,
                }
            )
        rtt = stats.get("rtt")
        return {
            "state": conn.state,
            "url": conn.url,
            "client_id": conn.client_id,
            "user_id": conn.user_id,
            "rtt_ms": round(rtt * 1000.0, 3) if isinstance(rtt, (int, float)) else -1.0,
            "attempt": int(stats.get("attempts") or 0),
            "queue_size": int(stats.get("queue_size") or 0),
            "pending_acks": int(stats.get("pending_acks") or 0),
            "pressure": pressure,
            "pending_ops": pending_ops,
            "channels": channels,
            "counters": {
                "sent": int(stats.get("frames_sent") or 0),
                "received": int(stats.get("frames_received") or 0),
                "errors": self._errors,
                "reconnects": int(stats.get("reconnects") or 0),
            },
        }
