"""Smoke test of the benchmark command: it runs end to end on a tiny load and writes its JSON.

Benchmarks are not tests: nothing here checks a speed. It checks that every server under
test starts, that the load generator reaches it and measures something, and that the
results document has the shape BENCHMARKS.md describes; B9 also checks that kernel B saw every
shared slider change (a count, not a speed); B12/B13 run in a quick run of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("rtwidgets", "raw", "socketio", "floor")
ROWS = "B2,B4,B6,B8,B9,B10,B11"  # floor: the syscall floor (benchmarks/floor.py)
CROWD_SERVERS = ("rtwidgets", "raw")  # B10/B11 (benchmarks/crowdbench.py) have these columns only


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--rows", ROWS, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, f"benchmark command failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text())


@pytest.mark.timeout(210)
def test_rows_and_metrics_are_measured_on_every_server(quick_run: tuple) -> None:
    _, doc = quick_run
    assert doc["quick"] is True
    assert list(doc["rows"]) == ["B2", "B4", "B6", "B8", "B9", "B10", "B11"]
    b2 = doc["rows"]["B2"]["metrics"]
    for server in SERVERS:
        assert b2["deliveries_per_s"][server] > 0
        assert b2["server_cpu_per_delivery"][server] > 0
    assert b2["deliveries_per_s"]["rtwidgets_vs_raw"] > 0
    assert b2["deliveries_per_s"]["rtwidgets_vs_socketio"] > 0
    b4 = doc["rows"]["B4"]
    for server in SERVERS:
        assert b4["metrics"]["p99"][server] >= b4["metrics"]["p50"][server] > 0
        # Every delivery arrived: the latency run saw all subscribers get all messages.
        detail = b4["details"][server]
        assert detail["complete"] is True
        assert detail["received_deliveries"] == detail["expected_deliveries"] > 0
        # The server's GC pauses inside the phase come from its --gc-log (all zero is possible).
        assert set(detail["server_gc"]) >= {"collections", "full_collections", "pauses_over_5ms", "max_ms"}
    # Fan-out through Redis: exactly one PUBLISH per message on every server, and every
    # delivery arrived on both gateways (the floor speaks RESP on plain sockets).
    b6 = doc["rows"]["B6"]
    for server in SERVERS:
        assert b6["metrics"]["publish_per_message"][server] == 1.0
        shared = b6["details"][server]["two_servers_redis"]
        assert shared["complete"] is True
        assert set(shared["latency_by_server"]) == {"server0", "server1"}
    b8 = doc["rows"]["B8"]["metrics"]
    assert b8["msgs_total"]["rtwidgets"] > 0
    assert b8["cpu_per_update"]["rtwidgets"] > 0
    assert doc["rows"]["B8"]["details"]["coalesced"]["updates_never_shown"] == 0
    # Shared sliders: kernel B saw every change covered, and its last value, over the wire.
    b9 = doc["rows"]["B9"]
    shared = b9["details"]["rtwidgets"]
    assert shared["changes"] == 2 * 100  # 2 sliders x 200/s x 0.5 s, every one set
    assert shared["changes_never_shown"] == 0 and shared["b_reached_final"] and shared["a_confirmed_final"]
    assert shared["staleness"]["samples"] == shared["changes"]
    assert shared["errors_in_a"] == [] and shared["errors_in_b"] == []
    # Coalesced: fewer publishes than changes, each delivered to both kernels (B and A's echo).
    assert 2 <= shared["publishes"] < shared["changes"]
    assert shared["deliveries"] == 2 * shared["publishes"]
    assert 2 <= shared["b_msgs_received"] <= shared["publishes"]
    assert b9["metrics"]["wire_publishes"]["rtwidgets"] > 0
    assert b9["metrics"]["staleness_p99"]["rtwidgets"] >= b9["metrics"]["staleness_p50"]["rtwidgets"] >= 0
    assert b9["metrics"]["cpu_per_change"]["rtwidgets"] > 0 and b9["metrics"]["cpu_per_change"]["raw"] > 0
    _check_crowd_rows(doc)


def _check_crowd_rows(doc: dict) -> None:
    """B10/B11: every client of the crowd subscribed, got every message, came back (no speeds)."""
    size = doc["sizes"]["B10"]["connections"]
    b10 = doc["rows"]["B10"]
    assert set(b10["details"]) == set(CROWD_SERVERS)
    for server in CROWD_SERVERS:
        detail = b10["details"][server]
        assert detail["connections"] == size and detail["workers"] == doc["sizes"]["B10"]["workers"]
        assert detail["complete"] is True and detail["errors"] == []
        # Warm-up and measured messages, each delivered once to every client.
        assert detail["received_deliveries"] == size * (detail["messages"] + doc["sizes"]["B10"]["warmup"])
        for metric in ("connect_rate", "deliveries_per_s", "server_cpu_per_delivery"):
            assert b10["metrics"][metric][server] > 0
        assert b10["metrics"]["rss_per_connection"][server] is not None
    assert b10["metrics"]["deliveries_per_s"]["rtwidgets_vs_raw"] > 0
    b11 = doc["rows"]["B11"]
    assert set(b11["details"]) == set(CROWD_SERVERS)
    for server in CROWD_SERVERS:
        detail = b11["details"][server]
        assert detail["subscribers"] == detail["reconnected"] == doc["sizes"]["B11"]["connections"]
        assert detail["reconnect_errors"] == [] and detail["errors"] == []
        assert detail["time_to_all_live_s"] > 0 and detail["messages"] > 0
    # rtwidgets resumes from history: every client caught up, nothing missing or repeated.
    rt = b11["details"]["rtwidgets"]
    assert rt["all_caught_up"] is True and rt["time_to_all_caught_up_s"] > 0
    assert rt["gaps"] == 0 and rt["duplicates"] == 0 and rt["gaps_of_reconnected_clients"] == 0


@pytest.mark.timeout(210)
def test_document_records_machine_and_prints_table(quick_run: tuple) -> None:
    proc, doc = quick_run
    machine = doc["machine"]
    assert machine["cpu_model"]
    assert machine["versions"]["websockets"] and machine["versions"]["python-socketio"]
    assert machine["servers_event_loop"] in ("asyncio", "uvloop")
    assert "off" in machine["compression"]["rtwidgets"]
    assert len(doc["loadavg_start"]) == 3
    for row in doc["rows"].values():
        assert row["passed"] in (True, False, None)
        assert len(row["loadavg_1_5_15"]) == 3
    # The table goes to stdout, one line per metric.
    assert "B2 fan-out" in proc.stdout and "deliveries_per_s" in proc.stdout
    assert doc["table_markdown"].startswith("| row | metric | rtwidgets | raw ws | socketio | floor |")


@pytest.mark.timeout(60)
def test_unknown_row_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--quick", "--rows", "B99"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 2
    assert "B99" in proc.stderr


# B12/B13 (benchmarks/scalebench.py): a 3+3 Redis Cluster and the CLI's --workers, in a run of their
# own so the cluster start (a few seconds) does not eat the other rows' time budget.
SCALE_ROWS = "B12,B13"
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


def test_a_row_that_failed_as_a_whole_makes_the_command_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """B8 reports a failed subprocess as ``details = {"error": ...}`` (no per-server dicts): the
    command must still exit 1 and name it, not report success."""
    import benchmarks.__main__ as cli
    from benchmarks.runner import row_errors

    failed = "widget benchmark failed (exit 1)"
    assert row_errors({"error": failed}) == {"row": failed}
    assert row_errors({"raw": {"error": "boom"}, "rtwidgets": {"x": 1}}) == {"raw": "boom"}
    assert row_errors({"rtwidgets": {"x": 1}}) == {}

    def fake_run(rows: list[str], **_: object) -> dict:
        return {"rows": {"B8": {"details": {"error": "widget benchmark failed (exit 1)"}}}}

    monkeypatch.setattr(cli, "run_benchmarks", fake_run)
    assert cli.main(["run", "--rows", "B8", "--quick"]) == 1
    monkeypatch.setattr(cli, "run_benchmarks", lambda rows, **_: {"rows": {"B8": {"details": {}}}})
    assert cli.main(["run", "--rows", "B8", "--quick"]) == 0
