"""B8, the widget path, in one process: updates -> coalescing -> trait sync -> comm messages.

``python -m benchmarks.widgetbench [--widgets 20] [--rate 1000] [--duration 3] [--json]``

Two runs with the same update stream (``rate`` updates per second per widget, pushed from
a producer thread as a notebook's sensor or network thread would):

* ``coalesced``: :class:`rtwidgets.widgets.live_chart.LiveChart` widgets fed with
  ``push()``; updates pass its BackpressureBuffer and CoalescedSync (Coalescer) on the
  runtime thread and leave as custom comm messages (``window``/``append`` data messages with
  Float64 buffers; ipywidgets ``update`` messages are counted too).
* ``direct``: the baseline: an anywidget with one synced ``Float`` trait set on every
  update, i.e. ipywidgets without coalescing.

No kernel is needed: ``comm.create_comm`` is replaced by a comm that serializes every
message with Jupyter's own ``json_packer`` (the kernel-side cost of a send, minus ZeroMQ)
and records when it was sent. Each update's value is its sequence number, so the newest
value in a message tells which updates it made visible: staleness = time from ``push``
to the first message showing it. CPU per update is the process CPU time (all threads)
over the run divided by the updates.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import threading
import time
from typing import Any

import comm
from comm import DummyComm

__all__ = ["run"]


class RecordingComm(DummyComm):
    """A comm that serializes like a kernel would and records (time, newest value) per state
    update or custom data message (``window``/``append``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from jupyter_client.session import json_packer

        self._pack = json_packer
        self.records: list[tuple[float, float | None]] = []
        self.bytes_sent = 0
        super().__init__(*args, **kwargs)

    def publish_msg(
        self,
        msg_type: str,
        data: Any = None,
        metadata: Any = None,
        buffers: Any = None,
        **keys: Any,
    ) -> None:
        packed = self._pack(data or {})
        self.bytes_sent += len(packed) + sum(len(memoryview(b)) for b in buffers or ())
        if msg_type != "comm_msg" or not isinstance(data, dict):
            return
        if data.get("method") == "update":
            self.records.append((time.monotonic(), _newest_value(data, buffers)))
        elif data.get("method") == "custom" and _is_data_message(data.get("content")):
            self.records.append((time.monotonic(), _newest_custom_value(data["content"], buffers)))


def _is_data_message(content: Any) -> bool:
    return isinstance(content, dict) and content.get("type") in ("window", "append")


def _last_float64(buf: Any) -> float | None:
    view = memoryview(buf).cast("B")
    return struct.unpack_from("<d", view, len(view) - 8)[0] if len(view) >= 8 else None


def _newest_custom_value(content: dict[str, Any], buffers: Any) -> float | None:
    """The newest y a LiveChart data message shows: its tail, else the last y it appends."""
    tail = content.get("tail")
    if isinstance(tail, list) and len(tail) == 2 and isinstance(tail[1], (int, float)):
        return float(tail[1])
    buffers = list(buffers or ())
    return _last_float64(buffers[1]) if len(buffers) == 2 else None


def _newest_value(data: dict[str, Any], buffers: Any) -> float | None:
    state = data.get("state", {})
    if isinstance(state.get("value"), (int, float)):
        return float(state["value"])
    for path, buf in zip(data.get("buffer_paths", []), buffers or (), strict=False):
        if path == ["y"]:
            return _last_float64(buf)
    return None


def _install_comm() -> None:
    comm.create_comm = RecordingComm  # type: ignore[assignment]


def _staleness(records: list[tuple[float, float | None]], push_times: list[float]) -> tuple[list[float], int]:
    """Per update: time until the first message whose newest value covers it; and how many never shown."""
    out: list[float] = []
    i = 0
    shown = -1.0
    n = len(records)
    for k, pushed in enumerate(push_times):
        while shown < k and i < n:
            t, value = records[i]
            i += 1
            if value is not None and value > shown:
                shown = value
                shown_at = t
        if shown >= k:
            out.append(max(0.0, shown_at - pushed))
        else:
            return out, len(push_times) - k
    return out, 0


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)

    def rank(p: float) -> float:
        return ordered[max(0, min(n - 1, math.ceil(p / 100 * n) - 1))] * 1000  # nearest rank

    return {"p50_ms": rank(50), "p99_ms": rank(99), "max_ms": ordered[-1] * 1000, "samples": n}


def _drive(push: list[Any], rate: float, duration: float, push_times: list[list[float]]) -> float:
    """Push ``rate`` updates/s to each widget for ``duration`` s from this thread; return elapsed."""
    start = time.monotonic()
    total = int(rate * duration)
    done = 0
    while done < total:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while done < due:
            for w, fn in enumerate(push):
                push_times[w].append(time.monotonic())
                fn(done)
            done += 1
        time.sleep(0.0005)
    return time.monotonic() - start


def _measure(kind: str, widgets: int, rate: float, duration: float) -> dict[str, Any]:
    import anywidget
    import traitlets

    from rtwidgets.runtime import get_runtime

    get_runtime().loop  # start the runtime thread before timing anything  # noqa: B018
    if kind == "coalesced":
        from rtwidgets.widgets.live_chart import LiveChart

        items: list[Any] = [LiveChart(title=f"w{i}", window_ms=10_000) for i in range(widgets)]
        push = [lambda k, w=w: w.push(float(k)) for w in items]
    else:

        class Direct(anywidget.AnyWidget):  # type: ignore[misc]
            _esm = "export default { render() {} }"
            value = traitlets.Float(-1.0).tag(sync=True)

        items = [Direct() for _ in range(widgets)]

        def setter(w: Any) -> Any:
            def set_value(k: int) -> None:
                w.value = float(k)

            return set_value

        push = [setter(w) for w in items]
    for w in items:
        w.comm.records.clear()
        w.comm.bytes_sent = 0
    push_times: list[list[float]] = [[] for _ in items]
    cpu0 = time.process_time()
    t0 = time.monotonic()
    elapsed = _drive(push, rate, duration, push_times)
    t_end = t0 + elapsed
    # Let the last coalesced flush go out (at most one flush interval plus a batch interval).
    deadline = time.monotonic() + 2.0
    last = int(rate * duration) - 1
    while time.monotonic() < deadline:
        if all(any(v is not None and v >= last for _, v in w.comm.records[-3:]) for w in items):
            break
        time.sleep(0.01)
    cpu = time.process_time() - cpu0
    per_widget = []
    stale: list[float] = []
    unshown = 0
    for w, times in zip(items, push_times, strict=True):
        records = w.comm.records
        per_widget.append(sum(1 for t, _ in records if t <= t_end) / elapsed)
        s, missing = _staleness(records, times)
        stale += s
        unshown += missing
    updates = sum(len(t) for t in push_times)
    sent = sum(w.comm.bytes_sent for w in items)
    for w in items:
        w.close()
    return {
        "widgets": widgets,
        "updates": updates,
        "seconds": elapsed,
        "updates_per_s_total": updates / elapsed,
        "msgs_per_s_per_widget_max": max(per_widget),
        "msgs_per_s_per_widget_mean": sum(per_widget) / len(per_widget),
        "msgs_per_s_total": sum(per_widget),
        "staleness": _percentiles(stale),
        "updates_never_shown": unshown,
        "cpu_us_per_update": cpu / max(updates, 1) * 1e6,
        "bytes_per_s": sent / elapsed,
    }


def run(widgets: int = 20, rate: float = 1000.0, duration: float = 3.0) -> dict[str, Any]:
    """Measure both paths; see the module docstring."""
    _install_comm()
    return {
        "coalesced": _measure("coalesced", widgets, rate, duration),
        "direct": _measure("direct", widgets, rate, duration),
        "threads": threading.active_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.widgetbench")
    parser.add_argument("--widgets", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0, help="updates per second per widget")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args(argv)
    if args.widgets < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--widgets, --rate and --duration must be positive")
    result = run(args.widgets, args.rate, args.duration)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
