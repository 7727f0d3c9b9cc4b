"""The ``rtwidgets`` CLI, run as a real subprocess (``python -m rtwidgets``).

Gateways listen on 127.0.0.1 with ``--port 0``; the tests read the one line the gateway
prints to learn the port, connect with a real WebSocket client and signal the process.
Every wait is on a condition (a line, a frame, process exit) with a generous timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

import rtwidgets
from rtwidgets.auth import issue_token, verify_token
from rtwidgets.cli import main

SECRET = "cli-test-secret-0123456789abcdef0123456789abcdef"
TIMEOUT = 30.0
LISTENING = re.compile(r"^rtwidgets gateway listening on ws://127\.0\.0\.1:(\d+)$")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RTWIDGETS_SECRET"}
    env.update(extra)
    return env


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtwidgets", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else _env(),
        timeout=TIMEOUT,
        check=False,
    )


def _mint(*args: str) -> str:
    """A token from the real CLI (its last stdout line)."""
    result = _run_cli("token", *args, env=_env(RTWIDGETS_SECRET=SECRET))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@dataclass
class RunningGateway:
    proc: asyncio.subprocess.Process
    url: str
    port: int

    async def stderr_text(self) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), TIMEOUT)).decode()


@asynccontextmanager
async def cli_gateway(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[RunningGateway]:
    """Start ``rtwidgets gateway --port 0 ...``; yield once it printed its URL; always reap it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rtwidgets",
        "gateway",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else _env(RTWIDGETS_SECRET=SECRET),
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().rstrip("\n")
        if not line:
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            pytest.fail(f"gateway exited before listening (rc={await proc.wait()}): {err}")
        match = LISTENING.match(line)
        assert match, f"unexpected first line: {line!r}"
        port = int(match.group(1))
        yield RunningGateway(proc, f"ws://127.0.0.1:{port}", port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _connect(url: str, token: str) -> tuple[ClientConnection, dict]:
    ws = await asyncio.wait_for(connect(f"{url}/?token={token}"), TIMEOUT)
    first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return ws, first


async def _request(ws: ClientConnection, frame: dict) -> dict:
    """Send a frame with an ``_id``; return the first ack/error correlated to it."""
    await ws.send(json.dumps(frame))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if reply.get("type") in ("ack", "error") and reply.get("id") == frame["_id"]:
            return reply


async def _close_code_after(ws: ClientConnection) -> int | None:
    """Drain until the server closes; return its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed:
        pass
    return ws.close_code


# ----------------------------------------------------------------------------- gateway


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_gateway_serves_cli_token_and_stops_gracefully(sig: signal.Signals) -> None:
    token = _mint("--user", "alice")
    # Debug logging is the most verbose: even there the token must not be logged.
    async with cli_gateway("--log-level", "debug") as gw:
        assert gw.port != 0
        ws, first = await _connect(gw.url, token)
        assert first["type"] == "connected"
        ack = await _request(ws, {"type": "subscribe", "channel": "room:1", "_id": 1})
        assert (ack["type"], ack["id"]) == ("ack", 1)

        gw.proc.send_signal(sig)
        assert await _close_code_after(ws) == 1001
        assert await asyncio.wait_for(gw.proc.wait(), TIMEOUT) == 0
        err = await gw.stderr_text()
        assert "Traceback" not in err
        assert token not in err and token.split(".")[2] not in err
        assert "connection open" in err  # debug logging was on


async def test_gateway_on_stop_restart_closes_with_1012() -> None:
    token = _mint("--user", "alice")
    async with cli_gateway("--on-stop", "restart") as gw:
        ws, first = await _connect(gw.url, token)
        assert first["type"] == "connected"
        gw.proc.send_signal(signal.SIGTERM)
        assert await _close_code_after(ws) == 1012  # clients reconnect (e.g. to another gateway)
        assert await asyncio.wait_for(gw.proc.wait(), TIMEOUT) == 0
        assert "1012" in await gw.stderr_text()


async def test_gateway_options_reach_the_gateway() -> None:
    token = issue_token(SECRET, "gina")
    args = ["--history", "7", "--max-message-bytes", "2048", "--publish-rate", "3.5"]
    args += ["--allowed-origin", "http://good.example", "--allowed-origin", "http://also.example"]
    async with cli_gateway(*args) as gw:
        ws = await asyncio.wait_for(
            connect(f"{gw.url}/?token={token}", origin=Origin("http://good.example")), TIMEOUT
        )
        first = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert first["type"] == "connected"
        # The gateway reports its limits in `connected`: the CLI options arrived.
        limits = first["limits"]
        assert (limits["historySize"], limits["maxMessageBytes"], limits["publishRate"]) == (7, 2048, 3.5)
        await ws.close()
        with pytest.raises(InvalidStatus) as refused:
            await asyncio.wait_for(
                connect(f"{gw.url}/?token={token}", origin=Origin("http://evil.example")), TIMEOUT
            )
        assert refused.value.response.status_code == 403


async def test_token_for_another_channel_is_refused_on_subscribe() -> None:
    token = _mint("--user", "bob", "--channel", "chat:*")
    async with cli_gateway() as gw:
        ws, first = await _connect(gw.url, token)
        assert first["type"] == "connected"
        refused = await _request(ws, {"type": "subscribe", "channel": "room:1", "_id": 7})
        assert refused["type"] == "error"
        assert refused["code"] == "forbidden"
        # The connection stays usable and the allowed pattern works.
        ack = await _request(ws, {"type": "subscribe", "channel": "chat:general", "_id": 8})
        assert ack["type"] == "ack"
        await ws.close()


async def test_generated_secret_is_announced_and_printed_only_on_request() -> None:
    async with cli_gateway("--print-secret", env=_env()) as gw:
        assert gw.proc.stderr is not None
        err_lines: list[str] = []
        secret = None
        while secret is None:
            line = (await asyncio.wait_for(gw.proc.stderr.readline(), TIMEOUT)).decode()
            assert line, f"stderr ended without the secret line: {err_lines}"
            err_lines.append(line)
            if line.startswith("rtwidgets: secret: "):
                secret = line.split(": ", 2)[2].strip()
        assert "Tokens must be minted with that secret" in "".join(err_lines)
        # The printed secret mints tokens this gateway accepts.
        token = _run_cli("token", "--secret", secret, "--user", "carol").stdout.strip().splitlines()[-1]
        ws, first = await _connect(gw.url, token)
        assert first["type"] == "connected"
        await ws.close()
        gw.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gw.proc.wait(), TIMEOUT) == 0
    # Without --print-secret the notice says how to see it, and the secret is not shown.
    async with cli_gateway(env=_env()) as gw2:
        gw2.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gw2.proc.wait(), TIMEOUT) == 0
        err2 = await gw2.stderr_text()
    assert "Tokens must be minted with that secret" in err2 and "--print-secret" in err2
    assert "secret:" not in err2


@pytest.mark.parametrize("no_uvloop", [False, True], ids=["default", "no-uvloop"])
async def test_event_loop_choice_is_logged_and_stdout_stays_one_line(no_uvloop: bool) -> None:
    try:
        import uvloop  # noqa: F401  # only probes whether the default can be uvloop
    except ImportError:
        have_uvloop = False
    else:
        have_uvloop = True
    async with cli_gateway(*(["--no-uvloop"] if no_uvloop else [])) as gw:
        ws, first = await _connect(gw.url, issue_token(SECRET, "lena"))
        assert first["type"] == "connected"
        await ws.close()
        gw.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gw.proc.wait(), TIMEOUT) == 0
        assert gw.proc.stdout is not None
        rest = (await asyncio.wait_for(gw.proc.stdout.read(), TIMEOUT)).decode()
        err = await gw.stderr_text()
    assert rest == ""  # the "listening on" line was the only stdout line
    expected = "event loop: uvloop." if have_uvloop and not no_uvloop else "event loop: asyncio."
    assert expected in err, err


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await asyncio.to_thread(
            _run_cli, "gateway", "--port", str(port), env=_env(RTWIDGETS_SECRET=SECRET)
        )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == f"rtwidgets: error: cannot listen on 127.0.0.1:{port}: address already in use"
    assert "Traceback" not in result.stderr


async def test_unreachable_redis_is_a_clear_error() -> None:
    result = await asyncio.to_thread(
        _run_cli,
        "gateway",
        "--port",
        "0",
        "--redis",
        "redis://:hunter2@127.0.0.1:1/0",
        "--start-timeout",
        "3",
        env=_env(RTWIDGETS_SECRET=SECRET),
    )
    assert result.returncode == 1
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rtwidgets: error: ")
    assert "Redis" in last and "127.0.0.1:1" in last
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


async def test_silent_redis_does_not_hang_startup() -> None:
    # A socket that accepts TCP but never answers: the Redis handshake would wait
    # forever without the CLI's start-up bound.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        result = await asyncio.to_thread(
            _run_cli,
            "gateway",
            "--port",
            "0",
            "--redis",
            f"redis://:hunter2@127.0.0.1:{port}/0",
            "--start-timeout",
            "1",
            env=_env(RTWIDGETS_SECRET=SECRET),
        )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rtwidgets: error: gateway did not start within 1s")
    assert f"redis://:***@127.0.0.1:{port}/0" in last
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_gateway_configuration_is_a_clear_error() -> None:
    # Larger than the gateway's hard frame cap: refused by GatewayConfig.
    result = _run_cli("gateway", "--port", "0", "--max-message-bytes", str(10**9), env=_env())
    assert result.returncode == 1
    assert "rtwidgets: error: invalid gateway configuration" in result.stderr
    assert "Traceback" not in result.stderr


def test_channel_ttl_without_redis_is_a_clear_error() -> None:
    result = _run_cli("gateway", "--port", "0", "--channel-ttl", "3600", env=_env())
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rtwidgets: error: invalid gateway configuration: channel_ttl applies to")


def _usage_error(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main`` in-process expecting argparse's usage error; return stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize(
    "args",
    [("--port", "70000"), ("--port", "x"), ("--history", "0"), ("--publish-rate", "-1"), ("--bogus",)],
)
def test_gateway_usage_errors_exit_2(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["gateway", *args], capsys)
    assert "usage: rtwidgets" in err
    assert "error:" in err


# ----------------------------------------------------------------------------- token


def test_token_without_secret_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RTWIDGETS_SECRET", raising=False)
    err = _usage_error(["token", "--user", "alice"], capsys)
    assert "usage: rtwidgets token" in err
    assert "a secret is required" in err


def test_token_uses_env_secret_and_patterns(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["token", "--secret", SECRET, "--user", "dana", "--channel", "chat:*", "--channel", "news"]
    args += ["--publish", "chat:general", "--presence", "chat:*", "--ttl", "60"]
    assert main(args) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    claims = verify_token(SECRET, token)
    assert claims.user_id == "dana"
    assert claims.can("subscribe", "chat:x") and claims.can("subscribe", "news")
    assert not claims.can("subscribe", "other")
    assert claims.can("publish", "chat:general") and not claims.can("publish", "chat:x")
    assert claims.can("presence", "chat:x") and not claims.can("presence", "news")
    assert claims.expires_at is not None


def test_token_defaults_to_every_channel() -> None:
    result = _run_cli("token", "--user", "erin", env=_env(RTWIDGETS_SECRET=SECRET))
    assert result.returncode == 0
    claims = verify_token(SECRET, result.stdout.strip().splitlines()[-1])
    for action in ("subscribe", "publish", "presence"):
        assert claims.can(action, "anything:at-all")


@pytest.mark.parametrize(
    "args", [("--user", "x", "--ttl", "0"), ("--user", ""), (), ("--user", "x", "--channel", "")]
)
def test_token_usage_errors_exit_2(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["token", "--secret", SECRET, *args], capsys)
    assert "usage: rtwidgets token" in err


def test_version() -> None:
    result = _run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"rtwidgets {rtwidgets.__version__}"


# ----------------------------------------------------------------------------- Python 3.10


def test_run_without_runner_matches_asyncio_runner() -> None:
    """Python 3.10 has no asyncio.Runner: the fallback runs on the factory's loop, returns the
    result, cancels leftover tasks and closes the loop (also when the coroutine raises)."""
    from rtwidgets.cli import _run_without_runner

    loops: list[asyncio.AbstractEventLoop] = []
    leftover: list[asyncio.Task[None]] = []

    def factory() -> asyncio.AbstractEventLoop:
        loops.append(asyncio.new_event_loop())
        return loops[-1]

    async def ok() -> int:
        assert asyncio.get_running_loop() is loops[-1]
        leftover.append(asyncio.create_task(asyncio.sleep(3600)))
        return 7

    assert _run_without_runner(ok(), factory) == 7
    assert loops[-1].is_closed() and leftover[-1].cancelled()

    async def fails() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _run_without_runner(fails(), factory)
    assert len(loops) == 2 and loops[-1].is_closed()

    async def plain() -> int:
        return 8

    assert _run_without_runner(plain(), None) == 8  # asyncio's own loop when no factory
