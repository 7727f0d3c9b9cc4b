"""Orchestrates the benchmark rows: servers and load generators in subprocesses, goals, results.

For every row and every server kind (rtwidgets, raw websockets, python-socketio, and the
syscall floor where it applies) the runner
starts the server(s) in fresh processes (``benchmarks.servers``), runs one load-generator
process (``benchmarks.loadgen``) with the row's scenario, stops the servers, and turns the
measurements into metrics, ratios and a pass/fail against the row's goal. B8 (the widget
path) runs in-process in its own subprocess (``benchmarks.widgetbench``); B9 (shared sliders)
in its own subprocess too, which starts the gateway and the partner kernel
(``benchmarks.sharebench``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .crowdbench import row_b10, row_b11
from .servers import DEFAULT_SECRET, raise_nofile_limit

__all__ = ["ALL_ROWS", "FLAVORS", "SIZES", "Metric", "RowResult", "run_benchmarks"]

FLAVORS = ("rtwidgets", "raw", "socketio", "floor")
# The syscall floor (benchmarks/floor.py) is a lower bound for fan-out and latency; it has
# no idle-memory, reconnect or widget equivalent worth measuring.
FLOOR_ROWS = ("B2", "B3", "B4", "B5", "B6")
ALL_ROWS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B13")
ROOT = Path(__file__).resolve().parent.parent

# Loads per row. "full" is sized to finish in about 4-5 minutes on 2 cores; "quick" is the
# smoke-test load (seconds): it checks the machinery, its figures mean nothing.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "B1": {"connections": 2000, "channels": 100},
        "B2": {"subscribers": 1000, "channels": 1, "window": 64, "warmup": 0.5, "duration": 3.0, "rounds": 2},
        "B3": {
            "subscribers": 1000,
            "channels": 1000,
            "channels_per_client": 5,
            "window": 2000,
            "warmup": 0.5,
            "duration": 3.0,
            "rounds": 2,
        },
        "B4": {"subscribers": 1000, "rate": 8.0, "duration": 5.0},
        "B5": {"slow_fraction": 0.05},  # B4's load and connections, then 5% stop reading
        "B6": {"subscribers": 200, "rate": 40.0, "duration": 6.0},
        "B7": {"subscribers": 1000, "rate": 10.0, "warm": 1.0, "timeout": 6.0, "tail": 0.5},
        "B8": {"widgets": 20, "rate": 1000.0, "duration": 3.0},
        "B9": {"widgets": 20, "rate": 1000.0, "duration": 3.0},
        "B10": {"connections": 18000, "workers": 3, "window": 4, "warmup": 4, "messages": 40},
        "B11": {"connections": 18000, "workers": 3, "rate": 2.0, "warm": 2.0, "timeout": 30.0, "tail": 1.0},
        "B12": {"subscribers": 200, "rate": 40.0, "duration": 6.0},  # B6's load (benchmarks/scalebench.py)
        "B13": {
            "subscribers": 1000, "channels": 1, "window": 64, "warmup": 0.5, "duration": 3.0,
            "rounds": 2,
        },
    },
    "quick": {
        "B1": {"connections": 40, "channels": 4},
        "B2": {"subscribers": 20, "channels": 1, "window": 4, "warmup": 0.2, "duration": 0.5},
        "B3": {
            "subscribers": 20,
            "channels": 20,
            "channels_per_client": 5,
            "window": 20,
            "warmup": 0.2,
            "duration": 0.5,
        },
        "B4": {"subscribers": 20, "rate": 20.0, "duration": 0.5},
        "B5": {"slow_fraction": 0.1},
        "B6": {"subscribers": 10, "rate": 20.0, "duration": 0.5},
        "B7": {"subscribers": 20, "rate": 20.0, "warm": 0.3, "timeout": 5.0, "tail": 0.2},
        "B8": {"widgets": 2, "rate": 200.0, "duration": 0.5},
        "B9": {"widgets": 2, "rate": 200.0, "duration": 0.5},
        "B10": {"connections": 200, "workers": 2, "window": 4, "warmup": 2, "messages": 10, "timeout": 30.0},
        "B11": {"connections": 200, "workers": 2, "rate": 10.0, "warm": 0.5, "timeout": 10.0, "tail": 0.3},
        "B12": {"subscribers": 10, "rate": 20.0, "duration": 0.5},
        "B13": {"subscribers": 20, "channels": 1, "window": 4, "warmup": 0.2, "duration": 0.5},
    },
}

TITLES = {
    "B1": "idle memory",
    "B2": "fan-out",
    "B3": "many channels",
    "B4": "latency",
    "B5": "slow consumers",
    "B6": "Redis",
    "B7": "reconnect storm",
    "B8": "widget path",
    "B9": "shared sliders",
    "B10": "crowd",
    "B11": "crowd reconnect storm",
    "B12": "Redis Cluster",
    "B13": "workers",
}


@dataclass
class Metric:
    """One figure of a row, per server kind. ``better``: 'higher', 'lower' or '' (no ratio)."""

    name: str
    unit: str
    values: dict[str, float | None]
    better: str = ""

    def ratio(self, other: str) -> float | None:
        a, b = self.values.get("rtwidgets"), self.values.get(other)
        if a is None or b is None or not self.better or b == 0:
            return None
        return a / b


@dataclass
class RowResult:
    row: str
    title: str
    goal: str
    metrics: list[Metric] = field(default_factory=list)
    passed: bool | None = None
    verdict: str = ""
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "title": self.title,
            "goal": self.goal,
            "passed": self.passed,
            "verdict": self.verdict,
            "loadavg_1_5_15": list(self.loadavg),
            "seconds": round(self.seconds, 2),
            "metrics": {
                m.name: {
                    "unit": m.unit,
                    "better": m.better,
                    **{k: v for k, v in m.values.items()},
                    "rtwidgets_vs_raw": m.ratio("raw"),
                    "rtwidgets_vs_socketio": m.ratio("socketio"),
                    "rtwidgets_vs_floor": m.ratio("floor"),
                }
                for m in self.metrics
            },
            "details": self.details,
        }


# ---------------------------------------------------------------------------- processes


class BenchError(RuntimeError):
    """A server or load generator failed; the message says which and why."""


class Server:
    """One server under test in a subprocess."""

    def __init__(self, kind: str, redis_url: str | None, uvloop: bool) -> None:
        fd, self.gc_log = tempfile.mkstemp(prefix="rtw-bench-gc-", suffix=".log")
        os.close(fd)
        cmd = [sys.executable, "-m", "benchmarks.servers", kind, "--secret", DEFAULT_SECRET]
        cmd += ["--gc-log", self.gc_log]
        if redis_url:
            cmd += ["--redis", redis_url]
        if uvloop:
            cmd.append("--uvloop")
        self.kind = kind
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=_child_env()
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise BenchError(f"{kind} server did not start: {line.strip()!r} {self.stderr_tail()}")
        self.port = int(line.split()[1])
        self.url = f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)  # graceful close is not measured; do not wait long for it
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()
        with contextlib.suppress(OSError):
            os.unlink(self.gc_log)


@contextlib.contextmanager
def servers(kind: str, count: int, redis_url: str | None, uvloop: bool) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(Server(kind, redis_url, uvloop))
        yield started
    finally:
        for server in started:
            server.stop()


class RedisProcess:
    """A throw-away redis-server on a free port (no persistence)."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise BenchError("B6 needs redis-server on PATH (Debian: apt-get install redis-server)")
        self._dir = tempfile.TemporaryDirectory(prefix="rtw-bench-redis-")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [*args, "--dir", self._dir.name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=0.5).ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise BenchError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._dir.cleanup()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_loadgen(spec: dict[str, Any], timeout: float = 180.0) -> dict[str, Any]:
    """Run one load-generator process with ``spec``; return its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen"],
        cwd=ROOT,
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_child_env(),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise BenchError(
            f"load generator for {spec['flavor']} {spec['scenario']} failed (exit {proc.returncode}): "
            f"{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def measure(
    flavor: str,
    scenario: str,
    params: dict[str, Any],
    uvloop: bool,
    *,
    count: int = 1,
    redis: RedisProcess | None = None,
) -> dict[str, Any]:
    """Start ``count`` servers of ``flavor``, run ``scenario`` against them, stop them."""
    with servers(flavor, count, redis.url if redis else None, uvloop) as started:
        spec = {
            "scenario": scenario,
            "flavor": flavor,
            "urls": [s.url for s in started],
            "server_pids": [s.pid for s in started],
            "server_gc_logs": [s.gc_log for s in started],
            "secret": DEFAULT_SECRET,
            "params": params,
        }
        if redis is not None:
            spec["redis_port"] = redis.port
        try:
            return run_loadgen(spec)
        except BenchError as exc:
            tails = " | ".join(s.stderr_tail(800) for s in started)
            raise BenchError(f"{exc}\nserver stderr: {tails}") from None


# ---------------------------------------------------------------------------- rows


def _get(d: dict[str, Any] | None, *path: str) -> float | None:
    cur: Any = d
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return float(cur) if isinstance(cur, (int, float)) and not isinstance(cur, bool) else None


def _per_flavor(fn: Callable[[str], dict[str, Any]], flavors: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for flavor in flavors:
        try:
            out[flavor] = fn(flavor)
        except (BenchError, subprocess.TimeoutExpired, OSError) as exc:
            out[flavor] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def row_b1(p: dict[str, Any], ctx: RunContext) -> RowResult:
    raw = _per_flavor(lambda f: measure(f, "idle", p, ctx.uvloop), ctx.flavors_for("B1"))
    per = {f: _get(r, "rss_per_connection_bytes") for f, r in raw.items()}
    res = RowResult("B1", TITLES["B1"], "rtwidgets RSS per idle connection <= 16 KiB", details=raw)
    res.metrics.append(
        Metric(
            "rss_per_connection",
            "KiB",
            {f: v / 1024 if v is not None else None for f, v in per.items()},
            "lower",
        )
    )
    v = per.get("rtwidgets")
    res.passed = None if v is None else v <= 16 * 1024
    return res


def row_throughput(row: str, p: dict[str, Any], ctx: RunContext) -> RowResult:
    # Interleaved rounds (rt, raw, sio, rt, raw, sio, ...), best round kept per server: on a
    # shared machine the least disturbed round is the closest to the server's capacity.
    params = {k: v for k, v in p.items() if k != "rounds"}
    flavors = ctx.flavors_for(row)
    rounds: dict[str, list[dict[str, Any]]] = {f: [] for f in flavors}
    for _ in range(int(p.get("rounds", 1))):
        for flavor, result in _per_flavor(
            lambda f: measure(f, "throughput", params, ctx.uvloop), flavors
        ).items():
            rounds[flavor].append(result)
    raw: dict[str, dict[str, Any]] = {}
    for flavor, results in rounds.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            raw[flavor] = results[0]
            continue
        best = dict(max(ok, key=lambda r: r["deliveries_per_s"]))
        best["server_cpu_us_per_delivery"] = min(r["server_cpu_us_per_delivery"] for r in ok)
        best["rounds_deliveries_per_s"] = [round(r["deliveries_per_s"]) for r in ok]
        best["rounds_server_cpu_us_per_delivery"] = [round(r["server_cpu_us_per_delivery"], 2) for r in ok]
        raw[flavor] = best
    goal = (
        "rtwidgets >= 0.7x raw and >= 5x python-socketio deliveries/s"
        if row == "B2"
        else "rtwidgets >= 0.5x raw deliveries/s"
    )
    res = RowResult(row, TITLES[row], goal, details=raw)
    rate = Metric(
        "deliveries_per_s", "1/s", {f: _get(r, "deliveries_per_s") for f, r in raw.items()}, "higher"
    )
    cpu = Metric(
        "server_cpu_per_delivery",
        "us",
        {f: _get(r, "server_cpu_us_per_delivery") for f, r in raw.items()},
        "lower",
    )
    res.metrics += [rate, cpu]
    vs_raw, vs_sio = rate.ratio("raw"), rate.ratio("socketio")
    if row == "B2":
        res.passed = None if vs_raw is None or vs_sio is None else vs_raw >= 0.7 and vs_sio >= 5
    else:
        res.passed = None if vs_raw is None else vs_raw >= 0.5
    if any(r.get("stalled") for r in raw.values()):
        res.verdict = "a publisher stalled (deliveries missing for 10 s): see details"
    return res


def _latency_pair(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """B4 and B5 share one run per server: phase 0 all clients read, phase 1 some stop."""
    if ctx.latency is None:
        p = {**ctx.sizes["B4"], "slow_fractions": [0.0, ctx.sizes["B5"]["slow_fraction"]]}
        raw = _per_flavor(lambda f: measure(f, "latency", p, ctx.uvloop), ctx.flavors_for("B4"))
        ctx.latency = {}
        for flavor, r in raw.items():
            if "phases" in r:
                ctx.latency[flavor] = {"B4": r["phases"][0], "B5": r["phases"][1]}
            else:
                ctx.latency[flavor] = {"B4": r, "B5": r}  # an error, reported in both rows
    return ctx.latency


def row_b4(p: dict[str, Any], ctx: RunContext) -> RowResult:
    raw = {f: r["B4"] for f, r in _latency_pair(ctx).items()}
    res = RowResult("B4", TITLES["B4"], "rtwidgets p99 publish -> deliver <= 10 ms", details=raw)
    res.metrics += [
        Metric("p50", "ms", {f: _get(r, "latency", "p50_ms") for f, r in raw.items()}, "lower"),
        Metric("p99", "ms", {f: _get(r, "latency", "p99_ms") for f, r in raw.items()}, "lower"),
        # The server's own GC pauses > 5 ms inside the measured phase (each can stall a burst).
        Metric(
            "server_gc_pauses_5ms", "", {f: _get(r, "server_gc", "pauses_over_5ms") for f, r in raw.items()}
        ),
    ]
    p99 = _get(raw.get("rtwidgets"), "latency", "p99_ms")
    complete = bool(raw.get("rtwidgets", {}).get("complete"))
    res.passed = None if p99 is None else p99 <= 10.0 and complete
    return res


def row_b5(p: dict[str, Any], ctx: RunContext) -> RowResult:
    pair = _latency_pair(ctx)
    raw = {f: r["B5"] for f, r in pair.items()}
    res = RowResult(
        "B5",
        TITLES["B5"],
        "fast clients' p99 <= 1.2x B4 p99; server RSS growth <= slow clients x 1 MiB (outbound limit)",
        details=raw,
    )
    p99 = {f: _get(r, "latency", "p99_ms") for f, r in raw.items()}
    growth = {
        f: (r["rss_max_bytes"] - r["rss_start_bytes"]) / 2**20 if "rss_max_bytes" in r else None
        for f, r in raw.items()
    }
    vs_b4: dict[str, float | None] = {}
    p50_vs_b4: dict[str, float | None] = {}
    for f in raw:
        b4 = _get(pair[f]["B4"], "latency", "p99_ms")
        vs_b4[f] = p99[f] / b4 if p99[f] is not None and b4 else None
        # The same comparison at the median: far steadier than two p99s of 40 bursts each.
        p50, b4_p50 = _get(raw[f], "latency", "p50_ms"), _get(pair[f]["B4"], "latency", "p50_ms")
        p50_vs_b4[f] = p50 / b4_p50 if p50 is not None and b4_p50 else None
    res.metrics += [
        Metric("fast_p99", "ms", p99, "lower"),
        Metric("fast_p99_vs_B4_p99", "", vs_b4, ""),
        Metric("fast_p50_vs_B4_p50", "", p50_vs_b4, ""),
        Metric("rss_growth", "MiB", growth, "lower"),
    ]
    rt, rt_growth = vs_b4.get("rtwidgets"), growth.get("rtwidgets")
    slow = raw.get("rtwidgets", {}).get("slow_subscribers", 0)
    # The bound: each slow client may hold up to outbound_limit_bytes (1 MiB) before 4008.
    res.passed = None if rt is None or rt_growth is None else rt <= 1.2 and rt_growth <= max(1, slow) * 1.0
    return res


def row_b6(p: dict[str, Any], ctx: RunContext) -> RowResult:
    redis = RedisProcess()
    try:

        def both(flavor: str) -> dict[str, Any]:
            single = measure(flavor, "latency", p, ctx.uvloop)
            shared = measure(flavor, "latency", p, ctx.uvloop, count=2, redis=redis)
            return {"single_memory": single, "two_servers_redis": shared}

        raw = _per_flavor(both, ctx.flavors_for("B6"))
    finally:
        redis.stop()
    res = RowResult(
        "B6",
        TITLES["B6"],
        "exactly 1 Redis PUBLISH per message; added p50 latency <= 1 ms",
        details={**raw, "redis_server": redis.version},
    )
    per_msg = {f: _get(r, "two_servers_redis", "redis_publish_per_message") for f, r in raw.items()}
    added: dict[str, float | None] = {}
    cross: dict[str, float | None] = {}
    for f, r in raw.items():
        a = _get(r, "two_servers_redis", "latency", "p50_ms")
        b = _get(r, "single_memory", "latency", "p50_ms")
        added[f] = a - b if a is not None and b is not None else None
        cross[f] = _get(r, "two_servers_redis", "latency_by_server", "server1", "p50_ms")
    res.metrics += [
        Metric("publish_per_message", "", per_msg),
        Metric("added_p50", "ms", added, ""),
        Metric("cross_server_p50", "ms", cross, "lower"),
    ]
    rt_pub, rt_added = per_msg.get("rtwidgets"), added.get("rtwidgets")
    complete = bool(raw.get("rtwidgets", {}).get("two_servers_redis", {}).get("complete"))
    res.passed = (
        None if rt_pub is None or rt_added is None else (rt_pub == 1.0 and rt_added <= 1.0 and complete)
    )
    return res


def row_b7(p: dict[str, Any], ctx: RunContext) -> RowResult:
    raw = _per_flavor(lambda f: measure(f, "storm", p, ctx.uvloop), ctx.flavors_for("B7"))
    res = RowResult(
        "B7", TITLES["B7"], "all clients caught up < 2 s after the drop, 0 gaps, 0 duplicates", details=raw
    )
    res.metrics += [
        Metric(
            "time_to_all_caught_up",
            "s",
            {f: _get(r, "time_to_all_caught_up_s") for f, r in raw.items()},
            "lower",
        ),
        Metric("time_to_all_live", "s", {f: _get(r, "time_to_all_live_s") for f, r in raw.items()}, "lower"),
        Metric("gaps", "", {f: _get(r, "gaps") for f, r in raw.items()}),
        Metric("duplicates", "", {f: _get(r, "duplicates") for f, r in raw.items()}),
    ]
    rt = raw.get("rtwidgets", {})
    t = _get(rt, "time_to_all_caught_up_s")
    res.passed = (
        None
        if "gaps" not in rt
        else (t is not None and t < 2.0 and rt["gaps"] == 0 and rt["duplicates"] == 0)
    )
    return res


def row_errors(details: dict[str, Any]) -> dict[str, str]:
    """What a row could not measure: ``{flavor: error}`` from its per-flavor details, and
    ``{"row": error}`` when the whole row failed (e.g. B8's or B9's subprocess: its details
    are then ``{"error": ...}`` instead of one dict per flavor)."""
    errors = {f: str(d["error"]) for f, d in details.items() if isinstance(d, dict) and "error" in d}
    if isinstance(details.get("error"), str):
        errors["row"] = details["error"]
    return errors


def row_b8(p: dict[str, Any], ctx: RunContext) -> RowResult:
    cmd = [sys.executable, "-m", "benchmarks.widgetbench", "--json"]
    cmd += ["--widgets", str(p["widgets"]), "--rate", str(p["rate"]), "--duration", str(p["duration"])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=_child_env())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        data: dict[str, Any] = {
            "error": f"widget benchmark failed (exit {proc.returncode}): {proc.stderr[-3000:]}"
        }
    else:
        data = json.loads(lines[-1])
    res = RowResult(
        "B8",
        TITLES["B8"],
        "<= 60 comm messages/s per widget, < 1000/s in total",
        details=data,
    )
    co, naive = data.get("coalesced", {}), data.get("direct", {})
    # The "raw" column of B8 is ipywidgets without coalescing (one trait set per update).
    res.metrics += [
        Metric(
            "msgs_per_widget_max",
            "1/s",
            {
                "rtwidgets": _get(co, "msgs_per_s_per_widget_max"),
                "raw": _get(naive, "msgs_per_s_per_widget_max"),
            },
            "lower",
        ),
        Metric(
            "msgs_total",
            "1/s",
            {"rtwidgets": _get(co, "msgs_per_s_total"), "raw": _get(naive, "msgs_per_s_total")},
            "lower",
        ),
        Metric(
            "staleness_p99",
            "ms",
            {"rtwidgets": _get(co, "staleness", "p99_ms"), "raw": _get(naive, "staleness", "p99_ms")},
            "lower",
        ),
        Metric(
            "cpu_per_update",
            "us",
            {"rtwidgets": _get(co, "cpu_us_per_update"), "raw": _get(naive, "cpu_us_per_update")},
            "lower",
        ),
        Metric(
            "comm_traffic",
            "MB/s",
            {
                f: (v / 1e6 if v is not None else None)
                for f, v in (("rtwidgets", _get(co, "bytes_per_s")), ("raw", _get(naive, "bytes_per_s")))
            },
            "lower",
        ),
    ]
    per, total = _get(co, "msgs_per_s_per_widget_max"), _get(co, "msgs_per_s_total")
    res.passed = None if per is None or total is None else per <= 60.0 and total < 1000.0
    res.verdict = "raw column = the same updates set directly on an ipywidgets trait (no coalescing)"
    return res


def row_b9(p: dict[str, Any], ctx: RunContext) -> RowResult:
    cmd = [sys.executable, "-m", "benchmarks.sharebench", "--json"]
    cmd += ["--widgets", str(p["widgets"]), "--rate", str(p["rate"]), "--duration", str(p["duration"])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, env=_child_env())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        # Under the server's name, as the network rows do, so the command reports it as failed.
        data: dict[str, Any] = {
            "rtwidgets": {
                "error": f"shared-slider benchmark failed (exit {proc.returncode}): {proc.stderr[-3000:]}"
            }
        }
    else:
        data = {"rtwidgets": json.loads(lines[-1])}
    res = RowResult(
        "B9",
        TITLES["B9"],
        "<= 30 msgs/s per slider (share's max_rate), <= 800/s on the wire, every last value at B",
        details=data,
    )
    rt = data.get("rtwidgets", {})
    base = rt.get("unshared", {})
    res.metrics += [
        Metric(
            "changes",
            "1/s",
            {"rtwidgets": _get(rt, "changes_per_s"), "raw": _get(base, "changes_per_s")},
            "higher",
        ),
        Metric("wire_publishes", "1/s", {"rtwidgets": _get(rt, "wire_publishes_per_s")}, "lower"),
        Metric("msgs_per_slider_max_at_B", "1/s", {"rtwidgets": _get(rt, "b_msgs_per_s_per_widget_max")}),
        Metric("staleness_p50", "ms", {"rtwidgets": _get(rt, "staleness", "p50_ms")}, "lower"),
        Metric("staleness_p99", "ms", {"rtwidgets": _get(rt, "staleness", "p99_ms")}, "lower"),
        Metric(
            "cpu_per_change",
            "us",
            {"rtwidgets": _get(rt, "cpu_us_per_change"), "raw": _get(base, "cpu_us_per_change")},
            "lower",
        ),
    ]
    per, wire = _get(rt, "b_msgs_per_s_per_widget_max"), _get(rt, "wire_publishes_per_s")
    secs = _get(rt, "seconds")
    complete = rt.get("changes_never_shown") == 0 and bool(rt.get("b_reached_final"))
    # A slider's first flush goes out at once, then at most max_rate per second: over a window of
    # `secs` seconds that is up to max_rate + 1/secs per second.
    res.passed = (
        None
        if per is None or wire is None or not secs
        else per <= 30.0 + 1 / secs and wire <= 800.0 and complete
    )
    res.verdict = "raw column = the same changes on unshared sliders (ipywidgets alone)"
    return res


@dataclass
class RunContext:
    uvloop: bool
    flavors: tuple[str, ...]
    sizes: dict[str, dict[str, Any]]
    latency: dict[str, dict[str, Any]] | None = None

    def flavors_for(self, row: str) -> tuple[str, ...]:
        return tuple(f for f in self.flavors if f != "floor" or row in FLOOR_ROWS)


ROW_FUNCS: dict[str, Callable[[dict[str, Any], RunContext], RowResult]] = {
    "B1": row_b1,
    "B2": lambda p, c: row_throughput("B2", p, c),
    "B3": lambda p, c: row_throughput("B3", p, c),
    "B4": row_b4,
    "B5": row_b5,
    "B6": row_b6,
    "B7": row_b7,
    "B8": row_b8,
    "B9": row_b9,
    "B10": row_b10,  # benchmarks/crowdbench.py (issue 17)
    "B11": row_b11,
    # benchmarks/scalebench.py imports this module: imported when the row runs.
    "B12": lambda p, c: importlib.import_module(".scalebench", __package__).row_b12(p, c),
    "B13": lambda p, c: importlib.import_module(".scalebench", __package__).row_b13(p, c),
}


# ---------------------------------------------------------------------------- machine


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(uvloop: bool) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        from rtwidgets.gateway.config import GatewayConfig

        rt_compression = GatewayConfig().compression or "off (GatewayConfig.compression default None)"
    except Exception as exc:  # the gateway package failed to import; say so, keep the run
        rt_compression = f"unknown (rtwidgets.gateway did not import: {type(exc).__name__}: {exc})"
    return {
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in (
                "rtwidgets",
                "websockets",
                "python-socketio",
                "python-engineio",
                "uvicorn",
                "orjson",
                "redis",
                "uvloop",
                "ipywidgets",
                "anywidget",
            )
        },
        "servers_event_loop": "uvloop" if uvloop else "asyncio",
        "floor_event_loop": "none (select.epoll, blocking-free sockets; --uvloop does not apply)",
        "loadgen_event_loop": "uvloop" if _version("uvloop") else "asyncio",
        "compression": {
            "rtwidgets": rt_compression,
            "raw": "off (compression=None)",
            "socketio": "off (uvicorn ws_per_message_deflate=False)",
            "floor": "off (no extensions implemented)",
            "loadgen": "off (the client offers no extensions)",
        },
    }


# ---------------------------------------------------------------------------- table


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if a >= 0.1 or a == 0 else f"{v:.3f}"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def table_rows(results: list[RowResult]) -> list[list[str]]:
    rows = []
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[r.passed]
        for i, m in enumerate(r.metrics):
            unit = f" ({m.unit})" if m.unit else ""
            rows.append(
                [
                    f"{r.row} {r.title}" if i == 0 else "",
                    m.name + unit,
                    _fmt(m.values.get("rtwidgets")),
                    _fmt(m.values.get("raw")),
                    _fmt(m.values.get("socketio")),
                    _fmt(m.values.get("floor")),
                    _ratio(m.ratio("raw")),
                    _ratio(m.ratio("socketio")),
                    _ratio(m.ratio("floor")),
                    r.goal if i == 0 else "",
                    verdict if i == 0 else "",
                    f"{r.loadavg[0]:.1f}" if i == 0 else "",
                ]
            )
    return rows


HEADER = [
    *("row", "metric", "rtwidgets", "raw ws", "socketio", "floor"),
    *("rt/raw", "rt/sio", "rt/floor", "goal", "result", "load1"),
]
GOAL_COLUMN = HEADER.index("goal")


def format_table(results: list[RowResult]) -> str:
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    widths[GOAL_COLUMN] = min(widths[GOAL_COLUMN], 48)
    lines = []
    for j, r in enumerate(rows):
        cells = [
            (c if len(c) <= widths[i] else c[: widths[i] - 1] + "…").ljust(widths[i]) for i, c in enumerate(r)
        ]
        lines.append(" | ".join(cells).rstrip())
        if j == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(results: list[RowResult]) -> str:
    rows = table_rows(results)
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


# ---------------------------------------------------------------------------- entry


def run_benchmarks(
    rows: list[str],
    *,
    quick: bool = False,
    uvloop: bool = False,
    flavors: tuple[str, ...] = FLAVORS,
    json_path: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``rows`` (e.g. ['B1', 'B2']); print progress; write and return the JSON document."""
    raise_nofile_limit()  # children inherit it
    unknown = [r for r in rows if r not in ROW_FUNCS]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ALL_ROWS)}")
    sizes = SIZES["quick" if quick else "full"]
    ctx = RunContext(uvloop=uvloop, flavors=flavors, sizes=sizes)
    started = time.time()
    results: list[RowResult] = []
    load_start = os.getloadavg()
    machine = machine_info(uvloop)  # before the rows: a broken import shows up at once

    def document() -> dict[str, Any]:
        return {
            "command": "python -m benchmarks run"
            + (" --quick" if quick else "")
            + (" --uvloop" if uvloop else ""),
            "quick": quick,
            "complete": len(results) == len(rows),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "machine": machine,
            "sizes": {r: sizes[r] for r in rows},
            "rows": {r.row: r.to_json() for r in results},
            "table_markdown": format_markdown(results),
        }

    def save(doc: dict[str, Any]) -> None:
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n")

    for row in rows:
        t0 = time.monotonic()
        load = os.getloadavg()
        log(f"[{time.strftime('%H:%M:%S')}] {row} {TITLES[row]} (load {load[0]:.1f}) ...")
        result = ROW_FUNCS[row](sizes[row], ctx)
        result.loadavg = tuple(round(x, 2) for x in load)  # type: ignore[assignment]
        result.seconds = time.monotonic() - t0
        for flavor, err in row_errors(result.details).items():
            log(f"    {flavor}: ERROR {err[:2000]}")
        results.append(result)
        log(f"    done in {result.seconds:.1f} s: {json.dumps({m.name: m.values for m in result.metrics})}")
        save(document())  # a later failure must not lose the rows already measured
    doc = document()
    save(doc)
    log("")
    log(format_table(results))
    log(f"\ntotal {doc['duration_s']} s; load average start {doc['loadavg_start']} end {doc['loadavg_end']}")
    if json_path is not None:
        log(f"wrote {json_path}")
    return doc
