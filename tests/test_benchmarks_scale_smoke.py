"""Smoke test of benchmark rows B12 (Redis Cluster vs one redis-server) and B13 (``rtwidgets gateway
--workers 1`` vs ``2``), benchmarks/scalebench.py: they run end to end on a tiny load and write the
JSON shape docs/benchmarks.md describes. Nothing here checks a speed.

Kept apart from tests/test_benchmarks_smoke.py so the cluster start (a few seconds) has its own
time budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCALE_ROWS = "B12,B13"  # benchmarks/scalebench.py: a 3+3 Redis Cluster, the CLI's --workers
BENCH = (sys.executable, "-m", "benchmarks", "run")


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One quick run of both rows with the servers that have them (rtwidgets, raw)."""
    out = tmp_path_factory.mktemp("bench") / "scale.json"
    proc = subprocess.run(
        [*BENCH, "--quick", "--rows", SCALE_ROWS, "--servers", "rtwidgets,raw", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, f"benchmark command failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


@pytest.mark.timeout(210)
def test_redis_cluster_row_measures_both_brokers(scale_run: dict) -> None:
    b12 = scale_run["rows"]["B12"]
    assert b12["passed"] in (True, False)
    metrics = b12["metrics"]
    # One PUBLISH (single Redis) / SPUBLISH (cluster, counted on the masters) per message.
    assert metrics["publish_per_message_single"]["rtwidgets"] == 1.0
    assert metrics["publish_per_message_single"]["raw"] == 1.0
    assert metrics["publish_per_message_cluster"]["rtwidgets"] == 1.0
    assert metrics["publish_per_message_cluster"]["raw"] is None  # raw has no cluster mode
    assert "no Redis Cluster mode" in b12["details"]["raw"]["cluster"]["not_measured"]
    for where, suffix in (("single_redis", "single"), ("cluster", "cluster")):
        run = b12["details"]["rtwidgets"][where]
        assert run["complete"] is True and run["errors"] == []
        assert run["received_deliveries"] == run["expected_deliveries"] > 0
        assert set(run["latency_by_server"]) == {"server0", "server1"}  # subscribers on both gateways
        assert metrics[f"redis_cmds_per_message_{suffix}"]["rtwidgets"] >= 1.0
        p50, p99 = (metrics[f"cross_server_{p}_{suffix}"]["rtwidgets"] for p in ("p50", "p99"))
        assert p99 >= p50 > 0
    assert len(b12["details"]["rtwidgets"]["cluster"]["cluster_masters"]) == 3
    assert b12["details"]["raw"]["single_redis"]["complete"] is True


@pytest.mark.timeout(210)
def test_workers_row_runs_one_and_two_cli_workers(scale_run: dict) -> None:
    b13 = scale_run["rows"]["B13"]
    assert b13["passed"] is None and "contention" in b13["verdict"]
    size = scale_run["sizes"]["B13"]["subscribers"]
    for workers in (1, 2):
        run = b13["details"]["rtwidgets"][f"workers_{workers}"]
        assert run["workers"] == workers and run["stalled"] is False and run["errors"] == []
        assert run["deliveries_per_s"] > 0 and run["server_cpu_us_per_delivery"] > 0
        # Every client connection (subscribers + the publisher) was on one of the workers; with
        # two, the kernel gave each some (all 21 on one: a 2 x 2^-21 chance).
        peaks = run["peak_new_sockets_per_worker"]
        assert len(peaks) == workers and sum(peaks) >= size + 1
        assert min(peaks) > 0
    metrics = b13["metrics"]
    for name in ("deliveries_per_s_1_worker", "deliveries_per_s_2_workers", "speedup_2_vs_1"):
        assert metrics[name]["rtwidgets"] > 0
