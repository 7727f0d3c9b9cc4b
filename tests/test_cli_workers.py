"""``rtwidgets gateway --workers N`` from the command line, without Redis: usage errors, the
workers' command line, start-up failures, and one worker on the in-memory broker.

The workers sharing channels through a real Redis are tested in ``tests/redis/test_workers.py``;
the supervisor's decisions in ``tests/gateway/test_supervisor.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rtwidgets.auth import issue_token
from rtwidgets.cli import build_parser, main
from rtwidgets.gateway.workers import available_cpus, worker_argv
from tests._support.gateway_proc import GatewayProcess
from tests._support.net import free_port
from tests._support.waiting import wait_until

SECRET = "cli-workers-secret-0123456789abcdef0123456789abcdef"
T = 30.0


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTWIDGETS_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "rtwidgets", *args], capture_output=True, text=True, env=env, timeout=T * 2
    )


def _workers_of(port: int) -> list[psutil.Process]:
    """Live processes started as a worker on ``port`` (``--port PORT --worker N``)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "--worker" in cmdline and f"{port}" in cmdline and "rtwidgets" in cmdline:
            found.append(proc)
    return found


# ----------------------------------------------------------------------------- usage


def test_more_than_one_worker_without_redis_is_a_usage_error() -> None:
    result = _run_cli("gateway", "--port", "0", "--workers", "2")
    assert result.returncode == 2
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rtwidgets gateway: error: --workers 2 needs a shared broker")
    assert "--redis redis://" in last and "redis+cluster://" in last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--workers", "0"), "expected a positive integer"),
        (("--workers", "many"), "expected an integer"),
        (("--workers", "2", "--redis", "redis://h/0", "--idle-timeout", "5"), "--idle-timeout"),
        (("--workers", "2", "--redis", "redis://h/0", "--worker", "1"), "--worker is internal"),
    ],
)
def test_workers_usage_errors_exit_2(
    args: Sequence[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["gateway", *args])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_workers_auto_is_one_per_cpu() -> None:
    args = build_parser().parse_args(["gateway", "--workers", "auto"])
    assert args.workers == available_cpus() >= 1
    assert build_parser().parse_args(["gateway", "--workers", "3"]).workers == 3


def test_worker_command_line_carries_every_option_but_the_secret() -> None:
    argv = ["gateway", "--host", "127.0.0.1", "--port", "0", "--secret", SECRET, "--print-secret"]
    argv += ["--redis", "redis://:pw@h:1/0", "--history", "7", "--channel-ttl", "2.5"]
    argv += ["--max-message-bytes", "2048", "--publish-rate", "3.5", "--heartbeat-timeout", "9"]
    argv += ["--allowed-origin", "http://a.example", "--allowed-origin", "http://b.example"]
    argv += ["--start-timeout", "4", "--on-stop", "shutdown", "--no-uvloop", "--log-level", "debug"]
    argv += ["--runtime-file", "/tmp/x.json", "--workers", "3"]
    args = build_parser().parse_args(argv)
    rendered = worker_argv(args.subparser, args, port=4321, slot=2)
    assert SECRET not in rendered and "--secret" not in rendered and "--print-secret" not in rendered
    assert "--workers" not in rendered and "--runtime-file" not in rendered
    assert rendered[-4:] == ["--port", "4321", "--worker", "2"]
    again = build_parser().parse_args(["gateway", *rendered])
    kept_back = {"secret", "print_secret", "workers", "worker", "port", "runtime_file", "idle_timeout"}
    for name, value in vars(args).items():
        if name not in kept_back | {"func", "subparser"}:
            assert getattr(again, name) == value, name  # every other option reaches the worker
    assert (again.port, again.worker, again.workers, again.secret) == (4321, 2, None, None)


# ----------------------------------------------------------------------------- start-up failures


def test_workers_failing_to_start_is_a_clear_error_and_leaves_no_process() -> None:
    port = free_port()
    result = _run_cli(
        "gateway", "--port", str(port), "--workers", "2", "--redis", "redis://:hunter2@127.0.0.1:1/0",
        "--start-timeout", "3",
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("rtwidgets: error: worker ")
    assert "before listening (its error is above)" in lines[-1]
    # The worker's own reason is there too, redacted like the single gateway's.
    assert any(line.startswith("rtwidgets: error: ") and "Redis" in line for line in lines[:-1])
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr
    assert _workers_of(port) == []


def test_workers_on_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run_cli("gateway", "--port", str(port), "--workers", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"rtwidgets: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )


# ----------------------------------------------------------------------------- one worker


async def test_one_worker_serves_on_the_memory_broker_and_stops_on_sigterm(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, 0, SECRET, "--workers", "1")
    try:
        await asyncio.to_thread(gw.start, T)
        assert gw.proc is not None
        (worker,) = wait_until(lambda: _workers_of(gw.port), T, "the worker process")
        assert worker.ppid() == gw.proc.pid
        assert SECRET not in " ".join(worker.cmdline())  # the secret went by environment
        ws = await asyncio.wait_for(connect(f"{gw.url}/?token={issue_token(SECRET, 'ann')}"), T)
        assert json.loads(await asyncio.wait_for(ws.recv(), T))["type"] == "connected"
        gw.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), T)
        assert ws.close_code == 1001  # no --redis: "going away", as a single gateway
        assert await asyncio.to_thread(gw.proc.wait, T) == 0
        assert not worker.is_running()
        with socket.socket() as again:
            # SO_REUSEADDR as any server: the closed connection may linger in TIME_WAIT.
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", gw.port))  # the port was released: nothing is bound to it
        assert "Traceback" not in gw.stderr_text()
    finally:
        gw.stop()
        for leftover in _workers_of(gw.port):
            leftover.kill()
