"""``Inspector``: a live table of a connection's internals plus a log of its events.

The snapshot is rebuilt on a runtime timer (every 0.5 s) and after each event; the log
holds the last 100 events. Both go through the widget's coalescer like every update.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import orjson
from traitlets import Dict, List

from rtwidgets.models._binding import DeadlineTimer
from rtwidgets.models.connection import Connection
from rtwidgets.runtime import get_runtime
from rtwidgets.widgets._base import RealtimeWidget

__all__ = ["MAX_EVENTS", "Inspector", "describe_event"]

MAX_EVENTS = 100
REFRESH_INTERVAL = 0.5
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


class Inspector(RealtimeWidget):
    """Shows what a :class:`~rtwidgets.models.connection.Connection` is doing.

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

    def __init__(self, connection: Connection, **kwargs: Any) -> None:
        if not isinstance(connection, Connection):
            raise TypeError(f"Inspector needs an rtwidgets Connection, got {type(connection).__name__}")
        self.connection = connection
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._errors = 0
        super().__init__(snapshot=self._build_snapshot(), **kwargs)
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

    def _on_timer(self, now: float) -> None:
        if self.closed:
            return
        self._sync.set(snapshot=self._build_snapshot())
        self._timer.schedule(now + REFRESH_INTERVAL)

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

    def _build_snapshot(self) -> dict[str, Any]:
        conn = self.connection
        try:
            stats = conn.stats()
        except Exception:  # a client torn down under us: show the model's view
            stats = {}
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
