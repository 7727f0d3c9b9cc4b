"""A real ``redis-server`` on a free 127.0.0.1 port (no persistence), and RESP spoken to it directly."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests._support.net import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one RESP command over a plain socket and return the raw reply (no client library)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        # bulk replies (INFO) may need more reads
        if data.startswith(b"$"):
            size = int(data[1 : data.index(b"\r\n")])
            want = data.index(b"\r\n") + 2 + size + 2
            while len(data) < want:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data


class RedisServer:
    """One redis-server process; ``stop()`` + ``start()`` restarts it empty on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} on port {self.port}")
            try:
                if redis_command(self.port, "PING", timeout=0.5).startswith(b"+PONG"):
                    # Make sure it is *our* server answering: after a stop, another test run
                    # may have picked the freed port for its own redis-server.
                    if self.proc.poll() is not None or self.pid_on_port() != self.proc.pid:
                        self.stop()
                        raise RuntimeError(f"port {self.port} was taken by another redis-server")
                    return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.kill()  # like a crash: no persistence, no goodbye to clients
        self.proc.wait(timeout=10)
        self.proc = None

    def pid_on_port(self) -> int:
        info = self.command("INFO", "server").decode()
        return int(next(line for line in info.splitlines() if line.startswith("process_id:")).split(":")[1])

    def command(self, *args: str) -> bytes:
        return redis_command(self.port, *args)

    def commandstat(self, name: str) -> int:
        """``calls`` of ``cmdstat_<name>`` from INFO commandstats (0 if never called)."""
        info = self.command("INFO", "commandstats").decode()
        for line in info.splitlines():
            if line.startswith(f"cmdstat_{name}:"):
                fields = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
                return int(fields["calls"])
        return 0


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` working in ``workdir``, killed on exit.

    Skips the calling test (``pytest.skip``) when ``redis-server`` is not installed.
    """
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_process(
    workdir: Path, *args: str, ready: Callable[[], bool], what: str, timeout: float = 10.0
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``redis-server`` with ``args`` (no persistence, working in ``workdir``), yielded once
    ``ready()`` holds; terminated on exit. For set-ups :class:`RedisServer` does not cover
    (a password, a Unix socket)."""
    command = [REDIS_SERVER, *args, "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            if time.monotonic() > deadline:  # a start-up bound, not a speed check
                raise RuntimeError(f"{what} did not start within {timeout}s")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
