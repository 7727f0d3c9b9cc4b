"""``rtwidgets gateway --workers 2`` as real processes, and clients that know which worker they are on.

:func:`worker_group` starts the CLI (the supervisor) with ``--port 0 --workers 2 --redis URL`` and
kills everything it started on exit. Which worker a client landed on is read from the kernel: the
worker process (psutil) holding the server end of the client's TCP connection
(:meth:`WorkerGroup.worker_of`, :func:`connect_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from rtwidgets.auth import issue_token
from rtwidgets.client import RealtimeConnection
from rtwidgets.core.connection import ConnectionState
from tests._support.clients import FAST
from tests._support.gateway_proc import GatewayProcess
from tests._support.waiting import wait_until

SECRET = "workers-test-secret-" + "w" * 32
T = 30.0  # a bound for a loaded machine, not an expectation of speed


class WorkerGroup:
    """The supervisor (a :class:`GatewayProcess`) and what the kernel says about its workers."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.gw = gw

    @property
    def supervisor(self) -> psutil.Process:
        assert self.gw.proc is not None
        return psutil.Process(self.gw.proc.pid)

    def listening(self) -> list[int]:
        """Pids of the supervisor's children listening on the port."""
        pids = []
        for child in self.supervisor.children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                conns = child.net_connections(kind="tcp")
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.gw.port for c in conns):
                    pids.append(child.pid)
        return sorted(pids)

    def wait_listening(self, count: int, without: tuple[int, ...] = ()) -> list[int]:
        """Wait until exactly ``count`` workers listen, none of them in ``without``; their pids."""

        def ready() -> list[int] | None:
            pids = self.listening()
            return pids if len(pids) == count and not set(pids) & set(without) else None

        result: list[int] = wait_until(ready, T, f"{count} workers listening (not {without})")
        return result

    def worker_of(self, client_port: int) -> int:
        """The pid of the worker holding the server end of the client connection from ``client_port``."""

        def find() -> int | None:
            for child in self.supervisor.children():
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    for c in child.net_connections(kind="tcp"):
                        if c.raddr and c.raddr.port == client_port and c.laddr.port == self.gw.port:
                            return child.pid
            return None

        pid: int = wait_until(find, T, f"the worker serving client port {client_port}")
        return pid

    def everyone(self) -> list[psutil.Process]:
        """The supervisor and all its descendants (for the teardown)."""
        try:
            return [self.supervisor, *self.supervisor.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


@contextlib.contextmanager
def worker_group(tmp_path: Path, redis_url: str, *extra: str) -> Iterator[WorkerGroup]:
    """``rtwidgets gateway --port 0 --workers 2 --redis URL *extra``, started; on exit the
    supervisor is stopped and every process it started is killed, whatever the test did."""
    gw = GatewayProcess(tmp_path, 0, SECRET, "--workers", "2", "--redis", redis_url, *extra)
    group = WorkerGroup(gw)
    try:
        gw.start(timeout=T * 2)
        yield group
    finally:
        survivors = group.everyone()
        gw.stop()
        for proc in survivors:  # nothing may outlive the test, whatever it did
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(survivors, timeout=T)


def my_ports_to(port: int) -> set[int]:
    """Local ports of this test process's TCP connections to ``port`` on 127.0.0.1."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


async def connect_client(group: WorkerGroup, user: str) -> tuple[RealtimeConnection, int]:
    """A connected client and the pid of the worker it landed on."""
    before = my_ports_to(group.gw.port)
    conn = RealtimeConnection(
        group.gw.url, token=issue_token(SECRET, user), reconnect=FAST, max_messages=100_000
    )
    await conn.connect(timeout=T)
    (port,) = my_ports_to(group.gw.port) - before  # clients connect one at a time
    return conn, await asyncio.to_thread(group.worker_of, port)


async def clients_on_two_workers(group: WorkerGroup, first: str, second: str) -> dict[str, Any]:
    """``first`` on some worker, ``second`` on the other one (new connections are spread by the
    kernel's hash, so a few tries are needed; the spare ones are closed)."""
    a, worker_a = await connect_client(group, first)
    for _ in range(60):
        b, worker_b = await connect_client(group, second)
        if worker_b != worker_a:
            return {"a": a, "worker_a": worker_a, "b": b, "worker_b": worker_b}
        await b.close()
    raise AssertionError("60 connections all went to the same worker: SO_REUSEPORT did not spread them")


def close_codes(conn: RealtimeConnection) -> list[int | None]:
    """The close code of each time ``conn`` loses its connection (filled as it happens)."""
    codes: list[int | None] = []

    def on_state(current: ConnectionState, previous: ConnectionState, reason: str | None) -> None:
        if previous is ConnectionState.CONNECTED:
            codes.append(conn.stats().last_close_code)

    conn.on_state_change(on_state)
    return codes
