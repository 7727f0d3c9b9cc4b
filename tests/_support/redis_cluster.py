"""A real Redis Cluster (3 masters + 3 replicas) on free 127.0.0.1 ports, for the cluster tests.

``running_cluster(workdir)`` starts six ``redis-server --cluster-enabled yes`` nodes (one
directory each: ``nodes.conf`` is per node), joins them with ``redis-cli --cluster create
... --cluster-replicas 1`` and yields once every node reports ``cluster_state:ok``. On exit
(also on Ctrl-C: pytest runs fixture teardown on SIGINT) every node gets ``SHUTDOWN NOSAVE``
and is killed if it does not exit; the nodes also die with the test process
(``PR_SET_PDEATHSIG``), so a killed pytest leaves no cluster behind.

Rules of this module:

* A node uses two ports: its client port ``P`` and its cluster bus ``P + 10000``; both are
  checked free before a node starts, so ports come from 20000-40000, not the ephemeral range.
* ``cluster-node-timeout`` is low (2000 ms by default) so a killed master's replica is
  promoted within a few seconds; every wait here is condition-based with a generous bound.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._support.redis_server import REDIS_SERVER, redis_command

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
_BUS_OFFSET = 10000
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """``count`` client ports whose cluster bus ports (``+10000``) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 40000)
        if port not in ports and _port_free(port) and _port_free(port + _BUS_OFFSET):
            ports.append(port)
    return ports


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; ``RuntimeError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


@dataclass
class ClusterNode:
    """One redis-server of the cluster."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def command(self, *args: str, timeout: float = 2.0) -> bytes:
        """One command over a plain socket; the raw RESP reply."""
        return redis_command(self.port, *args, timeout=timeout)

    def info_field(self, section: str, field: str) -> str:
        info = self.command("CLUSTER", "INFO") if section == "cluster" else self.command("INFO", section)
        for line in info.decode(errors="replace").splitlines():
            if line.startswith(f"{field}:"):
                return line.split(":", 1)[1].strip()
        return ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class NodeRole:
    """A line of ``CLUSTER NODES``: id, port, master or replica (and of whom), slots held."""

    node_id: str
    port: int
    master: bool
    master_id: str | None
    failed: bool
    slots: tuple[tuple[int, int], ...]

    def holds(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


class RedisClusterProcesses:
    """Six cluster nodes; see the module docstring."""

    def __init__(self, workdir: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000):
        self.workdir = workdir
        self.node_timeout_ms = node_timeout_ms
        self.replicas = replicas
        count = masters * (1 + replicas)
        # Replicas expected in sync by wait_ok(); a test that kills a node lowers it.
        self.expected_replicas = masters * replicas
        self.nodes = [ClusterNode(port, workdir / f"node-{port}") for port in cluster_ports(count)]

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL of the first node (any node works as the seed)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            self._spawn(node)
        for node in self.nodes:
            wait_for(lambda n=node: n.command("PING", timeout=0.5).startswith(b"+PONG"), f"node {node.port}")
        create = [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)]
        create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout!r} {done.stderr!r}")
        self.wait_ok(timeout)

    def _spawn(self, node: ClusterNode) -> None:
        args = [REDIS_SERVER, "--port", str(node.port), "--bind", "127.0.0.1"]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        args += ["--save", "", "--appendonly", "no", "--dir", str(node.workdir)]
        node.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Every live node says ``cluster_state:ok`` and agrees on who holds every slot."""

        def agreed() -> bool:
            live = [n for n in self.nodes if n.alive]
            if any(n.info_field("cluster", "cluster_state") != "ok" for n in live):
                return False
            views = {self._slot_owners(n) for n in live}
            if len(views) != 1:
                return False
            # Replicas must be attached and in sync, or a failover test would find none to promote.
            replicas = [n for n in live if n.info_field("replication", "role") == "slave"]
            return len(replicas) >= self.expected_replicas and all(
                n.info_field("replication", "master_link_status") == "up" for n in replicas
            )

        wait_for(agreed, "cluster_state:ok on every node, replicas in sync", timeout)

    def _slot_owners(self, node: ClusterNode) -> tuple[tuple[int, int, int], ...]:
        masters = [r for r in self.roles(node) if r.master and not r.failed and r.slots]
        return tuple(sorted((lo, hi, r.port) for r in masters for lo, hi in r.slots))

    def roles(self, via: ClusterNode | None = None) -> list[NodeRole]:
        """``CLUSTER NODES`` as seen by ``via`` (default: the first live node)."""
        node = via or next(n for n in self.nodes if n.alive)
        raw = node.command("CLUSTER", "NODES").decode()
        body = raw.split("\r\n", 1)[1] if raw.startswith("$") else raw
        roles = []
        for line in body.strip().splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            flags = parts[2].split(",")
            slots = []
            for spec in parts[8:]:
                if spec.startswith("["):
                    continue  # a slot being migrated/imported
                lo, _, hi = spec.partition("-")
                slots.append((int(lo), int(hi or lo)))
            roles.append(
                NodeRole(
                    node_id=parts[0],
                    port=int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                    master="master" in flags,
                    master_id=None if parts[3] == "-" else parts[3],
                    failed="fail" in flags or "fail?" in flags,
                    slots=tuple(slots),
                )
            )
        return roles

    def keyslot(self, key: str) -> int:
        reply = next(n for n in self.nodes if n.alive).command("CLUSTER", "KEYSLOT", key)
        return int(reply[1:].split(b"\r\n")[0])

    def master_of(self, slot: int) -> NodeRole:
        """The live master serving ``slot``; ``LookupError`` while none does (mid-failover)."""
        for role in self.roles():
            if role.master and not role.failed and role.holds(slot):
                return role
        raise LookupError(f"no live master serves slot {slot}")

    def owner_port(self, slot: int) -> int | None:
        """The port of the live master serving ``slot``, or None while none does."""
        try:
            return self.master_of(slot).port
        except LookupError:
            return None

    def cli(self, port: int, *args: str) -> str:
        """``redis-cli -p port args...`` (raw output); ``RuntimeError`` if it fails or says ERR."""
        done = subprocess.run(
            [REDIS_CLI, "-p", str(port), *args], capture_output=True, timeout=30, check=False, text=True
        )
        if done.returncode != 0 or done.stdout.startswith(("ERR", "(error)")):
            raise RuntimeError(f"redis-cli -p {port} {' '.join(args)}: {done.stdout!r} {done.stderr!r}")
        return done.stdout

    def migrate_slot(
        self, slot: int, to_port: int, *, between_keys: Callable[[], None] | None = None
    ) -> None:
        """Move ``slot`` (and its keys) to the master on ``to_port``, the way ``redis-cli --cluster
        reshard`` does: SETSLOT IMPORTING/MIGRATING, MIGRATE the keys a few at a time, then
        SETSLOT NODE on every master. ``between_keys`` runs after each MIGRATE (to let traffic
        flow while the slot is half moved)."""
        source = self.master_of(slot)
        target = next(r for r in self.roles() if r.port == to_port)
        if source.port == to_port:
            return
        self.cli(to_port, "cluster", "setslot", str(slot), "importing", source.node_id)
        self.cli(source.port, "cluster", "setslot", str(slot), "migrating", target.node_id)
        while True:
            keys = self.cli(source.port, "cluster", "getkeysinslot", str(slot), "2").split()
            if not keys:
                break
            self.cli(source.port, "migrate", "127.0.0.1", str(to_port), "", "0", "5000", "keys", *keys)
            if between_keys is not None:
                between_keys()
        for role in self.roles():
            if role.master and not role.failed:
                self.cli(role.port, "cluster", "setslot", str(slot), "node", target.node_id)
        self.wait_ok()

    def kill(self, port: int) -> None:
        """``kill -9`` one node (no goodbye, no persistence)."""
        node = self.node(port)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        if self.expected_replicas:
            self.expected_replicas -= 1  # one replica fewer once the survivors settle

    def restart(self, port: int) -> None:
        """Start a killed node again on its port and directory: it rejoins the cluster (as a
        replica of whoever holds its old slots now) once the others have promoted one."""
        node = self.node(port)
        assert not node.alive, "restart() is for a node that was killed"
        self._spawn(node)
        self.expected_replicas += 1
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                with contextlib.suppress(OSError):
                    subprocess.run(
                        [REDIS_CLI, "-p", str(node.port), "shutdown", "nosave"],
                        capture_output=True,
                        timeout=5,
                        check=False,
                    )
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(5)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(5)


@contextlib.contextmanager
def running_cluster(workdir: Path, **options: int) -> Iterator[RedisClusterProcesses]:
    """A started :class:`RedisClusterProcesses`, shut down on exit.

    Skips the calling test when ``redis-server``/``redis-cli`` are not installed.
    """
    if not Path(REDIS_SERVER).exists() or not Path(REDIS_CLI).exists():
        pytest.skip("redis-server / redis-cli are not installed")
    cluster = RedisClusterProcesses(workdir, **options)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


_SHARED: list[RedisClusterProcesses] = []


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """One cluster for the whole session (several conftests import this fixture; the first use
    starts it, session teardown stops it). Tests isolate themselves with a key prefix. Tests
    that kill nodes use :func:`running_cluster` for a cluster of their own."""
    if _SHARED:
        yield _SHARED[0]
        return
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        _SHARED.append(cluster)
        try:
            yield cluster
        finally:
            _SHARED.clear()
