"""A gateway as a real subprocess on a fixed port: start, wait until listening, stop, SIGKILL, restart.

Two entry points print the same readiness line (``... listening on ws://HOST:PORT``):
:data:`CLI` is the product's own ``python -m rtwidgets gateway``; :data:`REDIS_GATEWAY` is
:mod:`tests._support.redis_gateway`, for what the CLI does not expose (a Redis key prefix
and presence TTL). Either way the process takes ``--port``, ``--secret`` and
``--log-level``; anything else is passed through as ``extra`` arguments.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psutil

from tests._support.net import free_port

ROOT = Path(__file__).resolve().parents[2]  # the repository: cwd of the child, so ``-m`` finds both
CLI: tuple[str, ...] = ("rtwidgets", "gateway")
REDIS_GATEWAY: tuple[str, ...] = ("tests._support.redis_gateway",)
READY = "listening on"  # the CLI's documented readiness line: "... listening on ws://HOST:PORT"
_ids = itertools.count(1)


class GatewayProcess:
    """``python -m <entry> --port PORT --secret SECRET --log-level warning *extra`` as a subprocess.

    :meth:`start` blocks until the process printed its ``listening on`` line (call it through
    ``asyncio.to_thread`` from async tests so clients keep running meanwhile); it can be called
    again after :meth:`kill9` or :meth:`stop` to restart on the same port. ``port=0`` lets the OS
    pick one (race-free); :attr:`port` is the real one once started. stdout/stderr of each start
    go to files in ``workdir``.
    """

    def __init__(
        self, workdir: Path, port: int, secret: str, *extra: str, entry: Sequence[str] = CLI
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.secret = secret
        self.extra = list(extra)
        self.entry = tuple(entry)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.name = f"gw{next(_ids)}"  # log file names: unique even while the port is still 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait for its readiness line; ``RuntimeError`` (with its stderr) if
        it exits first or is not ready within ``timeout`` seconds (then it is killed)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        out = self.workdir / f"{self.name}-{self.starts}.out"
        err = self.workdir / f"{self.name}-{self.starts}.err"
        args = [sys.executable, "-m", *self.entry, "--port", str(self.port)]
        args += ["--secret", self.secret, "--log-level", "warning", *self.extra]
        with out.open("wb") as fout, err.open("wb") as ferr:
            self.proc = subprocess.Popen(args, stdout=fout, stderr=ferr, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # A complete line only (it ends with a newline), never one still being written.
            lines = out.read_text().splitlines(keepends=True)
            line = next((line for line in lines if READY in line and line.endswith("\n")), None)
            if line is not None:
                self.port = int(line.rsplit(":", 1)[1])  # the real port, also when started with 0
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {err.read_text()[-2000:]}")
            time.sleep(0.02)  # polling a file the child writes; the condition is the line itself
        self.kill9()
        raise RuntimeError(f"gateway on port {self.port} did not start within {timeout} s")

    def kill9(self) -> None:
        """A crash: SIGKILL, no goodbye to anyone; returns once the process is gone."""
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
        """Everything the process wrote to stderr, over all its starts."""
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob(f"{self.name}-*.err")))


Spawn = Callable[..., GatewayProcess]


@contextlib.contextmanager
def gateway_processes(workdir: Path, secret: str, *extra: str, entry: Sequence[str] = CLI) -> Iterator[Spawn]:
    """A factory ``spawn(*more_extra, port=None) -> GatewayProcess`` whose processes are all stopped
    on exit. Each is started on ``port``; ``None`` picks a free one beforehand (fixed, so it can be
    restarted on it), ``0`` lets the gateway bind any. ``extra`` goes to every one."""
    started: list[GatewayProcess] = []

    def spawn(*more: str, port: int | None = None) -> GatewayProcess:
        gw = GatewayProcess(
            workdir, free_port() if port is None else port, secret, *extra, *more, entry=entry
        )
        started.append(gw)  # before start(): a failed start is still cleaned up
        gw.start()
        return gw

    try:
        yield spawn
    finally:
        for gw in started:
            gw.stop()
