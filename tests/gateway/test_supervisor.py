"""The ``--workers`` supervisor and its decisions, without Redis or gateways.

The pure decisions (backoff, roll order, usage errors, the port reservation) are tested directly.
:class:`~rtwidgets.gateway.supervisor.Supervisor` runs real processes here: a stand-in worker
(``python -c`` :data:`STAND_IN`) that prints the readiness line, records what happens to it in
a journal file, and stops on SIGTERM, SIGHUP or EOF on stdin like a real worker. The real
workers (gateways on Redis) are tested in ``tests/redis/test_workers.py``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from rtwidgets.gateway.supervisor import Supervisor
from rtwidgets.gateway.workers import (
    PortReservation,
    RestartPolicy,
    SlotRecord,
    WorkersError,
    next_to_roll,
    usage_error,
)
from tests._support.waiting import eventually

T = 30.0  # a bound for a loaded machine

# A worker stand-in: argv = journal, slot, mode. Modes: "ok"; "fail" (exit 3 before listening);
# "fail-after-first" (listens only the first time its slot starts: a broken upgrade).
STAND_IN = r"""
import os, signal, sys, time
journal, slot, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def note(what):
    with open(journal, "a") as f:
        f.write(f"{what} {slot} {os.getpid()}\n")
lines = open(journal).read().splitlines() if os.path.exists(journal) else []
starts = sum(1 for line in lines if line.startswith(f"start {slot} "))
note("start")
if mode == "fail" or (mode == "fail-after-first" and starts >= 1):
    print("stand-in: cannot start", file=sys.stderr)
    sys.exit(3)
def stop(signum, frame):
    note({signal.SIGTERM: "term", signal.SIGHUP: "hup"}[signum])
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGHUP, stop)
note("ready")
print(f"stand-in {slot} listening on ws://127.0.0.1:1", flush=True)
sys.stdin.read()  # EOF: the supervisor is gone
note("eof")
"""

FAST = RestartPolicy(base_delay=0.05, max_delay=0.2, stable_after=60.0)


def journal_lines(journal: Path) -> list[tuple[str, int, int]]:
    if not journal.exists():
        return []
    out = []
    for line in journal.read_text().splitlines():
        what, slot, pid = line.split()
        out.append((what, int(slot), int(pid)))
    return out


def command(journal: Path, mode: str | Callable[[int], str] = "ok") -> Callable[[int], list[str]]:
    def build(slot: int) -> list[str]:
        chosen = mode(slot) if callable(mode) else mode
        return [sys.executable, "-c", STAND_IN, str(journal), str(slot), chosen]

    return build


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Supervisor]]:
    """Supervisors registered here are stopped after the test, whatever happened."""
    supervisors: list[Supervisor] = []
    yield supervisors
    for sup in supervisors:
        sup.request_stop()
        await asyncio.wait_for(sup.wait(), T)


def supervisor(
    cleanup: list[Supervisor], journal: Path, count: int, mode: str | Callable[[int], str] = "ok"
) -> Supervisor:
    # A worker that does not stop is killed after 10 s, well inside the tests' bound T: a slow
    # stop then still ends the test's wait, and the journal says whether SIGTERM was handled.
    sup = Supervisor(
        count, command(journal, mode), dict(os.environ), ready_timeout=T, policy=FAST, stop_timeout=10.0
    )
    cleanup.append(sup)
    return sup


# ----------------------------------------------------------------------------- pure decisions


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(base_delay=0.1, max_delay=1.0)
    assert [policy.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert policy.delay(10_000) == 1.0  # no overflow for a long outage
    with pytest.raises(ValueError):
        policy.delay(0)


@pytest.mark.parametrize(
    "kwargs", [{"base_delay": -1.0}, {"base_delay": 2.0, "max_delay": 1.0}, {"stable_after": 0.0}]
)
def test_backoff_refuses_values_out_of_range(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)


def test_slot_record_counts_restarts_and_resets_after_a_stable_run() -> None:
    policy = RestartPolicy(base_delay=1.0, max_delay=100.0, stable_after=30.0)
    record = SlotRecord()
    assert record.exited(policy, None) == 1.0  # never listened
    assert record.exited(policy, 2.0) == 2.0  # listened briefly: still consecutive
    assert record.exited(policy, None) == 4.0
    assert record.exited(policy, 30.0) == 1.0  # a stable run: the backoff starts over
    assert (record.restarts, record.failures) == (4, 1)


def test_next_to_roll_takes_the_oldest_process_started_before_the_signal() -> None:
    assert next_to_roll({0: 1, 1: 0, 2: 2}, cutoff=3) == 1
    assert next_to_roll({0: 1, 1: 3, 2: 2}, cutoff=3) == 0
    assert next_to_roll({0: 4, 1: 3, 2: 5}, cutoff=3) is None  # all replaced
    assert next_to_roll({}, cutoff=3) is None
    # A second SIGHUP during a roll raises the cutoff: the already replaced ones are due again.
    assert next_to_roll({0: 4, 1: 3, 2: 5}, cutoff=6) == 1


def test_usage_errors() -> None:
    fine = {"worker": None, "redis": None, "idle_timeout": None}
    assert usage_error(workers=None, **fine) is None
    assert usage_error(workers=1, **fine) is None  # one process needs no shared broker
    assert usage_error(workers=4, **{**fine, "redis": "redis://h/0"}) is None
    no_broker = usage_error(workers=2, **fine)
    assert no_broker is not None and "needs a shared broker" in no_broker and "--redis" in no_broker
    idle = usage_error(workers=2, **{**fine, "redis": "redis://h/0", "idle_timeout": 5.0})
    assert idle is not None and "--idle-timeout" in idle
    internal = usage_error(workers=2, **{**fine, "redis": "redis://h/0", "worker": 0})
    assert internal is not None and "internal" in internal


# ----------------------------------------------------------------------------- the port


def test_port_reservation_holds_the_port_for_reuseport_listeners_only() -> None:
    with PortReservation("127.0.0.1", 0) as reservation:
        port = reservation.port
        assert port != 0
        with socket.socket() as plain, pytest.raises(OSError) as refused:
            plain.bind(("127.0.0.1", port))
        assert refused.value.errno == errno.EADDRINUSE
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
        with pytest.raises(ConnectionRefusedError):  # bound, never listening
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", port))  # released


def test_port_reservation_refuses_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError) as refused:
            PortReservation("127.0.0.1", busy.getsockname()[1])
    assert refused.value.errno == errno.EADDRINUSE


def test_port_reservation_refuses_to_join_another_reuseport_server() -> None:
    # Binding next to a SO_REUSEPORT listener succeeds: without the check, two groups of
    # workers would silently share one port.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError) as refused:
            PortReservation("127.0.0.1", other.getsockname()[1])
    assert refused.value.errno == errno.EADDRINUSE


# ----------------------------------------------------------------------------- the supervisor


async def test_start_waits_for_every_worker_and_stop_ends_them_all(
    tmp_path: Path, cleanup: list[Supervisor]
) -> None:
    journal = tmp_path / "journal"
    sup = supervisor(cleanup, journal, 3)
    assert await asyncio.wait_for(sup.start(), T) is True
    pids = sup.pids()
    assert len(set(pids)) == 3
    assert sorted(slot for what, slot, _ in journal_lines(journal) if what == "ready") == [0, 1, 2]
    sup.request_stop()
    await asyncio.wait_for(sup.wait(), T)
    assert all(gone(pid) for pid in pids)
    assert sorted(pid for what, _, pid in journal_lines(journal) if what == "term") == sorted(pids)
    assert sup.restarts == 0


async def test_a_worker_failing_at_start_fails_the_start_and_leaves_nothing(
    tmp_path: Path, cleanup: list[Supervisor]
) -> None:
    journal = tmp_path / "journal"
    sup = supervisor(cleanup, journal, 2, mode=lambda slot: "fail" if slot == 1 else "ok")
    with pytest.raises(WorkersError, match=r"worker 1 \(pid \d+\) exited \(exit code 3\) before listening"):
        await asyncio.wait_for(sup.start(), T)
    started = [pid for what, _, pid in journal_lines(journal) if what == "start"]
    assert len(started) == 2
    assert all(gone(pid) for pid in started)


async def test_a_killed_worker_is_restarted_and_counted(tmp_path: Path, cleanup: list[Supervisor]) -> None:
    journal = tmp_path / "journal"
    sup = supervisor(cleanup, journal, 2)
    assert await asyncio.wait_for(sup.start(), T)
    first, second = sup.pids()
    os.kill(first, signal.SIGKILL)
    await eventually(lambda: sup.pids()[0] != first and sup.restarts == 1, "worker 0 restarted", T)
    new = sup.pids()[0]
    assert sup.pids()[1] == second  # the other one was left alone
    assert (sup.records[0].restarts, sup.records[1].restarts) == (1, 0)
    assert ("ready", 0, new) in journal_lines(journal)
    # Again: counted again, with the backoff's count going up (it listened only briefly).
    os.kill(new, signal.SIGKILL)
    await eventually(lambda: sup.pids()[0] not in (first, new) and sup.restarts == 2, "restarted again", T)
    assert sup.records[0].failures == 2


async def test_a_worker_that_keeps_failing_is_retried_with_backoff(
    tmp_path: Path, cleanup: list[Supervisor]
) -> None:
    journal = tmp_path / "journal"
    sup = supervisor(cleanup, journal, 1, mode="fail-after-first")
    assert await asyncio.wait_for(sup.start(), T)
    (pid,) = sup.pids()
    os.kill(pid, signal.SIGKILL)
    # Every retry fails at start-up: each one is counted, and none is taken as serving.
    await eventually(lambda: sup.records[0].restarts >= 3, "three failed restarts", T)
    assert sup.pids() == [pid]  # still the dead one: nothing else listened
    assert sup.records[0].failures >= 3


async def test_roll_replaces_each_worker_after_its_replacement_listens(
    tmp_path: Path, cleanup: list[Supervisor]
) -> None:
    journal = tmp_path / "journal"
    sup = supervisor(cleanup, journal, 2)
    assert await asyncio.wait_for(sup.start(), T)
    old = sup.pids()
    sup.request_roll()
    await eventually(lambda: all(pid not in old for pid in sup.pids()), "both workers replaced", T)
    new = sup.pids()
    await eventually(lambda: all(gone(pid) for pid in old), "the old workers exited", T)
    events = journal_lines(journal)
    order = [(what, pid) for what, _, pid in events]
    for slot in (0, 1):
        # The old worker was asked to stop with SIGHUP (1012 for a real one), and only after
        # its replacement was listening.
        assert order.index(("ready", new[slot])) < order.index(("hup", old[slot]))
    # One at a time: the second replacement started only once the first old worker had stopped.
    assert order.index(("hup", old[0])) < order.index(("start", new[1]))
    assert sup.restarts == 0  # a roll is not a crash


async def test_a_failing_replacement_ends_the_roll_and_keeps_the_old_worker(
    tmp_path: Path, cleanup: list[Supervisor]
) -> None:
    journal = tmp_path / "journal"
    sup = supervisor(cleanup, journal, 2, mode=lambda slot: "fail-after-first" if slot == 0 else "ok")
    assert await asyncio.wait_for(sup.start(), T)
    old = sup.pids()
    sup.request_roll()
    await eventually(
        lambda: sum(1 for what, slot, _ in journal_lines(journal) if (what, slot) == ("start", 0)) == 2,
        "the replacement tried to start",
        T,
    )
    roll = sup._roll_task
    assert roll is not None
    await asyncio.wait_for(roll, T)
    assert sup.pids() == old  # both old workers still serve: slot 1 was never touched
    assert not any(what == "hup" for what, _, _ in journal_lines(journal))
