"""The shared gateway with real processes: started detached, found again, raced, replaced, idled out.

Every test has its own ``RTWIDGETS_RUNTIME_DIR`` (so it never finds a developer's gateway), and
every gateway started under it is stopped at teardown (its process group is killed), also when
the test fails. Waits are on conditions (a process exits, a file appears) with generous bounds.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from websockets.sync.client import connect as ws_connect

from rtwidgets.gateway import Gateway
from rtwidgets.gateway.discovery import (
    GATEWAY_URL_ENV,
    RUNTIME_DIR_ENV,
    GatewayRecord,
    RuntimePaths,
    SharedGatewayError,
    healthz_ok,
    read_record,
    shared_gateway,
    write_record,
)
from tests._support.waiting import wait_until

TIMEOUT = 60.0  # a bound for a loaded 2-core machine, not an expectation of speed
ROOT = Path(__file__).resolve().parents[2]


def gateways_under(directory: Path) -> list[psutil.Process]:
    """The running ``rtwidgets gateway`` processes whose runtime file is in ``directory``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if "gateway" in cmdline and any(str(directory) in part for part in cmdline):
            found.append(proc)
    return found


def exited(pid: int) -> bool:
    """True once ``pid`` is gone (a zombie child of ours is reaped and counts as gone)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            proc.wait(0)
            return True
    except psutil.NoSuchProcess:
        return True
    return False


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh runtime directory for this test; every gateway started in it is killed afterwards."""
    directory = tmp_path / "runtime"
    monkeypatch.setenv(RUNTIME_DIR_ENV, str(directory))
    monkeypatch.delenv(GATEWAY_URL_ENV, raising=False)
    yield directory
    for proc in gateways_under(directory):
        # Started with start_new_session: the gateway leads its own process group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
        except psutil.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def connected_user(url: str, token: str) -> str:
    """Open a WebSocket with ``token``, read the ``connected`` frame, close; return its userId."""
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=TIMEOUT) as ws:
        frame = json.loads(ws.recv(timeout=TIMEOUT))
    assert frame["type"] == "connected", frame
    return str(frame["userId"])


# A kernel, as far as the shared gateway is concerned: a process that asks for it and prints it.
KERNEL = textwrap.dedent(
    """
    import json, sys
    from rtwidgets.gateway.discovery import shared_gateway
    gw = shared_gateway(idle_timeout=float(sys.argv[1]))
    print(json.dumps({"url": gw.url, "pid": gw.pid, "source": gw.source, "token": gw.token("k")}))
    """
)


def start_kernel(idle_timeout: float = 600.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", KERNEL, str(idle_timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def kernel_result(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=TIMEOUT * 2)
    assert process.returncode == 0, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


# ----------------------------------------------------------------------------- tests


def test_first_call_starts_a_detached_gateway_the_next_attaches(runtime: Path) -> None:
    first = shared_gateway()
    assert first.source == "started" and first.pid is not None
    again = Gateway.shared()  # the public spelling: the same gateway
    assert (again.source, again.url, again.pid, again.secret) == (
        "runtime-file",
        first.url,
        first.pid,
        first.secret,
    )
    assert healthz_ok(first.url)
    # Tokens it mints are accepted: the quickstart's `gw.token("alice")` works unchanged.
    assert connected_user(first.url, again.token("alice")) == "alice"

    # The runtime file is private and names the gateway; the directory is private too.
    paths = RuntimePaths(runtime)
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.record.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.log.stat().st_mode) == 0o600
    record = read_record(paths.record)
    assert record is not None and (record.url, record.pid) == (first.url, first.pid)

    # Detached: its own session, so a kernel's shutdown does not take it along; and the secret
    # is nowhere on its command line.
    proc = psutil.Process(first.pid)
    assert os.getsid(first.pid) == first.pid != os.getsid(0)
    assert first.secret not in " ".join(proc.cmdline())
    assert gateways_under(runtime) == [proc]


def test_gateway_outlives_the_kernel_that_started_it(runtime: Path) -> None:
    started = kernel_result(start_kernel())
    assert started["source"] == "started"
    assert healthz_ok(str(started["url"]))  # the kernel has exited; its gateway still serves
    later = kernel_result(start_kernel())
    assert (later["source"], later["url"], later["pid"]) == ("runtime-file", started["url"], started["pid"])
    assert connected_user(str(later["url"]), str(later["token"])) == "k"


def test_concurrent_first_starts_end_with_exactly_one_gateway(runtime: Path) -> None:
    kernels = [start_kernel() for _ in range(6)]
    results = [kernel_result(k) for k in kernels]
    assert len({(r["url"], r["pid"]) for r in results}) == 1, results
    assert sorted(str(r["source"]) for r in results) == ["runtime-file"] * 5 + ["started"]
    alive = gateways_under(runtime)
    assert [p.pid for p in alive] == [results[0]["pid"]]
    for result in results:
        assert connected_user(str(result["url"]), str(result["token"])) == "k"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(TIMEOUT)
    return process.pid


def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}"  # nothing listens there once the socket is closed


@pytest.mark.parametrize("which", ["dead process", "live process, no answer"])
def test_stale_runtime_file_is_replaced(runtime: Path, which: str) -> None:
    paths = RuntimePaths(runtime).ensure()
    pid = _dead_pid() if which == "dead process" else os.getpid()
    stale = GatewayRecord(url=_closed_port_url(), pid=pid, secret="old-secret-" * 4)
    write_record(paths.record, stale)
    gw = shared_gateway()
    assert gw.source == "started" and gw.pid != pid and gw.url != stale.url
    record = read_record(paths.record)
    assert record is not None and (record.pid, record.url) == (gw.pid, gw.url)
    assert record.secret != stale.secret
    assert connected_user(gw.url, gw.token("alice")) == "alice"


def test_idle_gateway_stops_and_removes_its_file_then_a_new_one_starts(runtime: Path) -> None:
    gw = shared_gateway(idle_timeout=1.0)
    assert gw.pid is not None
    assert connected_user(gw.url, gw.token("alice")) == "alice"  # busy once, then idle
    wait_until(lambda: exited(gw.pid), TIMEOUT, "the idle gateway to exit", interval=0.05)  # type: ignore[arg-type]
    assert not RuntimePaths(runtime).record.exists()
    assert not healthz_ok(gw.url)
    fresh = shared_gateway(idle_timeout=600.0)
    assert fresh.source == "started" and fresh.pid != gw.pid


def test_stop_ends_it_for_everyone_and_removes_its_file(runtime: Path) -> None:
    gw = shared_gateway()
    gw.stop()
    assert not healthz_ok(gw.url)
    assert not RuntimePaths(runtime).record.exists()
    assert gateways_under(runtime) == []


def test_unsafe_runtime_file_is_refused_not_used(runtime: Path) -> None:
    gw = shared_gateway()
    RuntimePaths(runtime).record.chmod(0o644)
    with pytest.raises(SharedGatewayError, match="readable by others"):
        shared_gateway()
    assert [p.pid for p in gateways_under(runtime)] == [gw.pid]  # nothing new was started


def test_a_gateway_that_cannot_start_is_a_clear_error(runtime: Path) -> None:
    with pytest.raises(SharedGatewayError, match="exited with 1") as info:
        # Nothing listens on port 1: the gateway's start-up fails and says so in its log.
        shared_gateway(gateway_args=["--redis", "redis://127.0.0.1:1/0", "--start-timeout", "5"])
    assert "Redis" in str(info.value)
    assert not RuntimePaths(runtime).record.exists()
    assert gateways_under(runtime) == []


# ----------------------------------------------------------------------------- the CLI options


def test_cli_runtime_file_names_the_gateway_and_goes_with_it(tmp_path: Path) -> None:
    path = tmp_path / "rt" / "gw.json"
    secret = "cli-secret-" * 4
    process = subprocess.Popen(
        [sys.executable, "-m", "rtwidgets", "gateway", "--port", "0", "--runtime-file", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "RTWIDGETS_SECRET": secret, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        record = read_record(path)  # written before the line is printed
        assert record is not None
        assert line.strip() == f"rtwidgets gateway listening on {record.url}"
        assert (record.pid, record.secret) == (process.pid, secret)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    assert not path.exists()


def test_cli_idle_timeout_without_runtime_file_exits_0_once_idle() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "rtwidgets", "gateway", "--port", "0", "--idle-timeout", "0.5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "RTWIDGETS_SECRET": "s" * 32, "PYTHONPATH": str(ROOT)},
        timeout=TIMEOUT,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.startswith("rtwidgets gateway listening on ws://127.0.0.1:")
    assert "no connection for" in process.stderr


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_cli_idle_timeout_must_be_positive(value: str) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "rtwidgets", "gateway", "--idle-timeout", value],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=TIMEOUT,
    )
    assert process.returncode == 2
    assert "--idle-timeout" in process.stderr
