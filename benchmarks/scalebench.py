"""Rows B12 (Redis Cluster vs one redis-server) and B13 (``rtwidgets gateway --workers 1`` vs ``2``).

B12 repeats B6's two-gateway measurement (publisher on gateway 0, subscribers on both, open-loop
publishing; PUBLISH/SPUBLISH commands per message and cross-gateway latency) once on one
``redis-server`` and once on a 3-master + 3-replica Redis Cluster, for rtwidgets; the raw
websockets server's Redis relay runs on the single redis-server only (it has no cluster mode).
B13 runs B2's saturated fan-out (one channel, a window of incomplete messages) against the
product's own CLI, ``rtwidgets gateway --workers N --redis URL``: N processes on one port
(SO_REUSEPORT), the kernel spreading the subscribers' connections over them; the server CPU is
the sum of the worker processes' CPU time.

Rules of this module:

* Every process or cluster a row starts is stopped in a ``finally`` (so also on an error or
  Ctrl-C); the cluster nodes also die with this process (``PR_SET_PDEATHSIG``, set by the
  cluster helper), the CLI's workers are killed by pid if the supervisor leaves any behind.
* The cluster helper lives in ``tests/_support/redis_cluster.py`` (the tests' fixture); it is
  imported inside :func:`row_b12` only, so ``python -m benchmarks`` works without it for the
  other rows.
* Row functions return a :class:`~benchmarks.runner.RowResult`; a measurement that failed is an
  ``{"error": ...}`` entry under the server's name in ``details`` (the command then exits 1).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .runner import (
    ROOT,
    BenchError,
    Metric,
    RedisProcess,
    RowResult,
    RunContext,
    _child_env,
    _get,
    measure,
    run_loadgen,
    servers,
)
from .servers import DEFAULT_SECRET

__all__ = ["row_b12", "row_b13"]

_ERRORS = (BenchError, subprocess.TimeoutExpired, OSError, RuntimeError)


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"}


# ---------------------------------------------------------------------------- B12


@contextlib.contextmanager
def _cluster() -> Iterator[Any]:
    """A started 3+3 Redis Cluster (``tests/_support/redis_cluster.py``), stopped on exit."""
    for exe in ("redis-server", "redis-cli"):
        if shutil.which(exe) is None:
            raise BenchError(f"B12 needs {exe} on PATH (Debian: apt-get install redis-server)")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        from tests._support.redis_cluster import RedisClusterProcesses
    except ImportError as exc:  # e.g. pytest (imported by the helper) is not installed
        raise BenchError(f"B12 needs tests/_support/redis_cluster.py and its imports: {exc}") from None

    with tempfile.TemporaryDirectory(prefix="rtw-bench-cluster-") as workdir:
        cluster = RedisClusterProcesses(Path(workdir))
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


def _measure_on_cluster(p: dict[str, Any], uvloop: bool, cluster: Any) -> dict[str, Any]:
    """B6's two-gateway latency run with both rtwidgets gateways on ``cluster``."""
    masters = sorted(r.port for r in cluster.roles() if r.master and not r.failed)
    with servers("rtwidgets", 2, cluster.url, uvloop) as started:
        spec = {
            "scenario": "latency",
            "flavor": "rtwidgets",
            "urls": [s.url for s in started],
            "server_pids": [s.pid for s in started],
            "server_gc_logs": [s.gc_log for s in started],
            "secret": DEFAULT_SECRET,
            "params": p,
            "redis_ports": masters,  # replicas replay SPUBLISH: count it where it is issued
        }
        try:
            result = run_loadgen(spec)
        except BenchError as exc:
            tails = " | ".join(s.stderr_tail(800) for s in started)
            raise BenchError(f"{exc}\nserver stderr: {tails}") from None
    result["cluster_masters"] = masters
    return result


def row_b12(p: dict[str, Any], ctx: RunContext) -> RowResult:
    """Two rtwidgets gateways on one redis-server, then on a 3+3 Redis Cluster; raw on one Redis."""
    flavors = [f for f in ("rtwidgets", "raw") if f in ctx.flavors]
    raw: dict[str, dict[str, Any]] = {f: {} for f in flavors}
    redis_version = None
    redis = RedisProcess()
    try:
        redis_version = redis.version
        for flavor in flavors:
            try:
                raw[flavor]["single_redis"] = measure(flavor, "latency", p, ctx.uvloop, count=2, redis=redis)
            except _ERRORS as exc:
                raw[flavor].update(_error(exc))
    finally:
        redis.stop()
    if "rtwidgets" in raw:
        try:
            with _cluster() as cluster:
                raw["rtwidgets"]["cluster"] = _measure_on_cluster(p, ctx.uvloop, cluster)
        except _ERRORS as exc:
            raw["rtwidgets"].update(_error(exc))
    if "raw" in raw:
        raw["raw"]["cluster"] = {"not_measured": "the raw websockets server has no Redis Cluster mode"}
    res = RowResult(
        "B12",
        "Redis Cluster",
        "cluster: exactly 1 SPUBLISH per message, every delivery on both gateways (latency: reported)",
        details={**raw, "redis_server": redis_version, "cluster": "3 masters + 3 replicas, 127.0.0.1"},
    )

    def per(where: str, *path: str) -> dict[str, float | None]:
        return {f: _get(r.get(where), *path) for f, r in raw.items()}

    cross = ("latency_by_server", "server1")
    res.metrics += [
        Metric("publish_per_message_single", "", per("single_redis", "redis_publish_per_message")),
        Metric("publish_per_message_cluster", "", per("cluster", "redis_publish_per_message")),
        Metric("redis_cmds_per_message_single", "", per("single_redis", "redis_commands_per_message")),
        Metric("redis_cmds_per_message_cluster", "", per("cluster", "redis_commands_per_message")),
        Metric("cross_server_p50_single", "ms", per("single_redis", *cross, "p50_ms"), "lower"),
        Metric("cross_server_p50_cluster", "ms", per("cluster", *cross, "p50_ms"), "lower"),
        Metric("cross_server_p99_single", "ms", per("single_redis", *cross, "p99_ms"), "lower"),
        Metric("cross_server_p99_cluster", "ms", per("cluster", *cross, "p99_ms"), "lower"),
        Metric("server_cpu_share_single", "", per("single_redis", "server_cpu_share"), "lower"),
        Metric("server_cpu_share_cluster", "", per("cluster", "server_cpu_share"), "lower"),
    ]
    rt = raw.get("rtwidgets", {})
    single, clustered = rt.get("single_redis", {}), rt.get("cluster", {})
    pub_s, pub_c = _get(single, "redis_publish_per_message"), _get(clustered, "redis_publish_per_message")
    res.passed = (
        None
        if pub_s is None or pub_c is None
        else pub_s == 1.0 and pub_c == 1.0 and bool(single.get("complete") and clustered.get("complete"))
    )
    res.verdict = "raw column: single redis-server only (the raw server has no cluster mode)"
    return res


# ---------------------------------------------------------------------------- B13


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc: no dependency)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return sorted(out)


def _socket_fds(pid: int) -> int:
    count = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    count += 1
    return count


class WorkerGroup:
    """``python -m rtwidgets gateway --port 0 --workers N --redis URL`` (the product's CLI)."""

    def __init__(self, workers: int, redis_url: str, uvloop: bool, timeout: float = 60.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="rtw-bench-workers-")
        self._out = Path(self._dir.name) / "stdout"
        self._err = Path(self._dir.name) / "stderr"
        cmd = [sys.executable, "-m", "rtwidgets", "gateway", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--workers", str(workers), "--redis", redis_url, "--publish-rate", "1e9"]
        cmd += ["--log-level", "warning"]
        if not uvloop:
            cmd.append("--no-uvloop")  # as the other servers under test: asyncio unless --uvloop
        env = {**_child_env(), "RTWIDGETS_SECRET": DEFAULT_SECRET}
        self.pids: list[int] = []
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, env=env)
        try:
            self.port = self._wait_ready(timeout)
            self.pids = _children(self.proc.pid)
            if len(self.pids) != workers:
                raise BenchError(f"--workers {workers}: {len(self.pids)} worker processes ({self.pids})")
        except BaseException:
            self.stop()
            raise
        self.url = f"ws://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self._out.read_text().splitlines(keepends=True):
                if "listening on" in line and line.endswith("\n"):
                    return int(line.rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise BenchError(f"rtwidgets gateway --workers exited {code}: {self.stderr()}")
            time.sleep(0.05)
        raise BenchError(f"rtwidgets gateway --workers not listening within {timeout:g} s: {self.stderr()}")

    def stderr(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self._err.read_text(errors="replace")[-limit:]
        return ""

    def stop(self) -> None:
        """SIGTERM to the supervisor (it stops its workers); then SIGKILL to whatever is left."""
        known = set(self.pids) | set(_children(self.proc.pid))
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in known:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._dir.cleanup()


def _measure_workers(workers: int, p: dict[str, Any], ctx: RunContext, redis_url: str) -> dict[str, Any]:
    group = WorkerGroup(workers, redis_url, ctx.uvloop)
    try:
        # Sockets a worker holds beyond those it had before the load generator started (its
        # listening socket, Redis connections): peaks show how the kernel spread the clients.
        base = {pid: _socket_fds(pid) for pid in group.pids}
        spread = {pid: 0 for pid in group.pids}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                for pid in group.pids:
                    spread[pid] = max(spread[pid], _socket_fds(pid) - base[pid])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        spec = {
            "scenario": "throughput",
            "flavor": "rtwidgets",
            "urls": [group.url],  # one port: the kernel picks the worker per connection
            "server_pids": group.pids,
            "secret": DEFAULT_SECRET,
            # 50 subscribes in flight, not B2's 200: the gateway's Redis broker runs each on a
            # pooled redis-py connection, and that pool's default cap (100 in redis-py 8) answers
            # a burst beyond it with "Too many connections" -> the subscribe gets 'unavailable'.
            "params": {"subscribe_concurrency": 50, **{k: v for k, v in p.items() if k != "rounds"}},
        }
        try:
            result = run_loadgen(spec)
        except BenchError as exc:
            raise BenchError(f"{exc}\ngateway stderr: {group.stderr(800)}") from None
        finally:
            done.set()
            sampler.join(5)
        result["workers"] = workers
        result["peak_new_sockets_per_worker"] = sorted(spread.values())
        return result
    finally:
        group.stop()


def row_b13(p: dict[str, Any], ctx: RunContext) -> RowResult:
    """Saturated fan-out through ``rtwidgets gateway --workers 1`` and ``--workers 2`` on Redis."""
    counts = (1, 2)
    raw: dict[str, Any] = {}
    if "rtwidgets" in ctx.flavors:
        best: dict[int, dict[str, Any]] = {}
        rounds: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
        redis = RedisProcess()
        try:
            for _ in range(int(p.get("rounds", 1))):
                for n in counts:  # interleaved, best of the rounds (as B2)
                    try:
                        r = _measure_workers(n, p, ctx, redis.url)
                    except _ERRORS as exc:
                        r = _error(exc)
                    rounds[n].append(r)
                    if "deliveries_per_s" in r and r["deliveries_per_s"] > best.get(n, {}).get(
                        "deliveries_per_s", -1.0
                    ):
                        best[n] = r
        finally:
            redis.stop()
        rt_raw: dict[str, Any] = {f"workers_{n}": best.get(n) or rounds[n][-1] for n in counts}
        failed = [r["error"] for r in rt_raw.values() if "error" in r]
        rt_raw["rounds"] = {f"workers_{n}": rounds[n] for n in counts}
        rt_raw["cpus"] = os.cpu_count()
        if failed:
            rt_raw["error"] = failed[0]
        raw["rtwidgets"] = rt_raw
    res = RowResult(
        "B13",
        "workers",
        "reported: --workers 2 vs 1 deliveries/s and CPU per delivery (no goal: 2 vCPUs here)",
        details=raw,
    )
    rt = raw.get("rtwidgets", {})

    def one(n: int, key: str, scale: float = 1.0) -> dict[str, float | None]:
        v = _get(rt.get(f"workers_{n}"), key)
        return {"rtwidgets": v * scale if v is not None else None}

    d1, d2 = one(1, "deliveries_per_s")["rtwidgets"], one(2, "deliveries_per_s")["rtwidgets"]
    res.metrics += [
        Metric("deliveries_per_s_1_worker", "1/s", one(1, "deliveries_per_s"), "higher"),
        Metric("deliveries_per_s_2_workers", "1/s", one(2, "deliveries_per_s"), "higher"),
        Metric("speedup_2_vs_1", "", {"rtwidgets": d2 / d1 if d1 and d2 is not None else None}),
        Metric("server_cpu_per_delivery_1_worker", "us", one(1, "server_cpu_us_per_delivery"), "lower"),
        Metric("server_cpu_per_delivery_2_workers", "us", one(2, "server_cpu_us_per_delivery"), "lower"),
        Metric("loadgen_cpu_share_2_workers", "", one(2, "loadgen_cpu_share")),
    ]
    stalled = any(bool(rt.get(f"workers_{n}", {}).get("stalled")) for n in counts)
    res.passed = None
    res.verdict = (
        "n/a by design: on a machine with fewer free cores than workers + load generator + "
        "redis-server, the workers row measures contention, not scaling"
        + ("; a run STALLED (no progress for 10 s)" if stalled else "")
    )
    return res
