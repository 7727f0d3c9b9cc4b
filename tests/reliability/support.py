"""Helpers shared by the reliability tests (processes, clients, waiting on conditions).

Everything waits on conditions with generous timeouts; nothing relies on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

TIMEOUT = 10.0


async def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    """A raw websockets client with test-friendly defaults (no keepalive)."""
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("open_timeout", TIMEOUT)
    return await ws_connect(url, **kwargs)


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for processes that must keep one fixed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """``python -m rtwidgets gateway`` as a real subprocess on a fixed port.

    :meth:`start` blocks until the CLI printed its ``listening on`` line (call it through
    ``asyncio.to_thread`` from async tests so clients keep running meanwhile). :meth:`kill9`
    is a crash: SIGKILL, no goodbye to anyone. stdout/stderr go to files in ``workdir``.
    """

    def __init__(self, workdir: Path, port: int, secret: str, *extra: str) -> None:
        self.workdir = workdir
        self.port = port
        self.secret = secret
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        out = self.workdir / f"gw{self.port}-{self.starts}.out"
        err = self.workdir / f"gw{self.port}-{self.starts}.err"
        args = [sys.executable, "-m", "rtwidgets", "gateway", "--port", str(self.port)]
        args += ["--secret", self.secret, "--log-level", "warning", *self.extra]
        with out.open("wb") as fout, err.open("wb") as ferr:
            self.proc = subprocess.Popen(args, stdout=fout, stderr=ferr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "listening on" in out.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {err.read_text()[-2000:]}")
            time.sleep(0.02)  # polling a file the child writes; the condition is the line itself
        self.kill9()
        raise RuntimeError(f"gateway on port {self.port} did not start within {timeout} s")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Graceful stop (SIGTERM); SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill9()

    def usage(self) -> tuple[int, int]:
        """``(rss_bytes, open_fds)`` of the running process."""
        assert self.proc is not None
        p = psutil.Process(self.proc.pid)
        return p.memory_info().rss, p.num_fds()

    def stderr_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob(f"gw{self.port}-*.err")))


async def eventually(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll ``predicate()`` (cheap, in-memory) until truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
