"""Helpers for the Redis tests: run a real ``redis-server`` and talk RESP to it directly."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class TcpProxy:
    """An asyncio TCP proxy on 127.0.0.1 in front of Redis, to cut the network on demand.

    ``cut()`` drops every open connection and refuses new ones until ``restore()``;
    Redis itself keeps running with its data (unlike a restart). ``break_on(marker, n)``
    makes the next ``n`` client chunks containing ``marker`` kill their connection instead
    of reaching Redis: a socket that looks alive in a pool but dies on first use.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.open = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._break_marker = b""
        self._break_left = 0
        self.broken = 0  # connections killed by break_on

    def break_on(self, marker: bytes, times: int) -> None:
        """Kill the connection of each of the next ``times`` client chunks containing ``marker``."""
        self._break_marker, self._break_left = marker, times

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if dst is up_writer and self._break_left and self._break_marker in data:
                        self._break_left -= 1
                        self.broken += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        self.open = False
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
