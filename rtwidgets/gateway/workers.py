"""``rtwidgets gateway --workers N``: N gateway processes on one port, sharing channels through Redis.

The CLI process becomes a supervisor (:class:`~rtwidgets.gateway.supervisor.Supervisor`) that
serves nothing: it reserves the port (:class:`PortReservation`: sockets bound with
``SO_REUSEPORT``, never listening) and starts N workers, ``python -m rtwidgets gateway ...
--worker SLOT`` (:func:`worker_argv`), each a :class:`~rtwidgets.gateway.Gateway` listening with
``SO_REUSEPORT`` on that same host and port, so the kernel spreads new connections over them.
This module holds the decisions the supervisor follows, the port, and a worker's own side
(:class:`WorkerStops`).

Rules of this module:

* Workers share channels only through the broker: more than one worker needs ``--redis``
  (:func:`usage_error`).
* The secret reaches a worker in its environment (``$RTWIDGETS_SECRET``), never on its command
  line, which every user of the machine can read (``ps``); :func:`worker_argv` leaves it out.
* A worker stops on SIGTERM (its clients closed as ``--on-stop`` says), on SIGHUP (closed with
  1012: a restart, they resume on the other workers) and at EOF on its stdin, a pipe from the
  supervisor, so a supervisor killed with -9 leaves no worker behind. It ignores SIGINT: Ctrl-C
  reaches the whole process group, and the supervisor decides.
* The decisions (backoff, which worker rolls next, the worker's command line, usage errors) are
  pure functions, tested without processes.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

__all__ = [
    "PortReservation",
    "RestartPolicy",
    "SlotRecord",
    "WorkerStops",
    "WorkersError",
    "available_cpus",
    "next_to_roll",
    "usage_error",
    "worker_argv",
]

log = logging.getLogger("rtwidgets.workers")

READY_MARKER = "listening on"  # in the CLI's readiness line "rtwidgets gateway listening on ws://..."
# Options the supervisor keeps to itself: the secret goes by environment; the port is the
# reserved one; a runtime file and the idle timeout describe the whole group, not one worker.
_NOT_FORWARDED = frozenset(
    {"secret", "print_secret", "workers", "worker", "port", "runtime_file", "idle_timeout", "help"}
)


class WorkersError(Exception):
    """A worker group could not start (the message is one line meant for humans)."""


# ----------------------------------------------------------------------------- pure decisions


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one), at least 1."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        return max(1, len(sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def usage_error(
    *, workers: int | None, worker: int | None, redis: str | None, idle_timeout: float | None
) -> str | None:
    """Why this combination of ``rtwidgets gateway`` options is refused, or None if it is fine.

    Args:
        workers: ``--workers`` (None: not given).
        worker: the internal ``--worker SLOT`` (None: not a worker).
        redis: ``--redis`` (None: the in-memory broker).
        idle_timeout: ``--idle-timeout`` (None: not given).
    """
    if workers is None:
        return None
    if worker is not None:
        return "--worker is internal to --workers; pass only --workers"
    if workers > 1 and redis is None:
        return (
            f"--workers {workers} needs a shared broker: add --redis redis://... or "
            "--redis redis+cluster://... (with the in-memory broker each worker would have "
            "channels of its own)"
        )
    if idle_timeout is not None:
        return "--idle-timeout applies to one gateway process; it cannot be combined with --workers"
    return None


@dataclass(frozen=True)
class RestartPolicy:
    """When a worker that died is started again.

    The n-th consecutive short-lived exit of a slot waits ``base_delay * 2**(n-1)`` seconds,
    at most ``max_delay``, so a worker failing at start-up (e.g. Redis down) is retried ever
    more slowly instead of in a tight loop. A worker that was listening for at least
    ``stable_after`` seconds before it died starts the count over.

    Args:
        base_delay: seconds before the first restart (>= 0).
        max_delay: the longest wait (>= ``base_delay``).
        stable_after: seconds of listening after which an exit is not "consecutive" (> 0).

    Raises:
        ValueError: a value out of range.
    """

    base_delay: float = 0.2
    max_delay: float = 10.0
    stable_after: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {self.base_delay}, {self.max_delay}")
        if not self.stable_after > 0:
            raise ValueError(f"stable_after must be > 0, got {self.stable_after}")

    def delay(self, failures: int) -> float:
        """Seconds to wait before restarting after the ``failures``-th consecutive exit (>= 1)."""
        if failures < 1:
            raise ValueError(f"failures must be >= 1, got {failures}")
        # min() first on the exponent: 2**failures overflows a float for long outages.
        return min(self.max_delay, self.base_delay * 2.0 ** min(failures - 1, 64))


@dataclass
class SlotRecord:
    """What the supervisor remembers of one worker slot across its processes.

    Attributes:
        restarts: unexpected exits of this slot so far (each one is followed by a restart).
        failures: consecutive short-lived exits (the backoff's count).
    """

    restarts: int = 0
    failures: int = 0

    def exited(self, policy: RestartPolicy, listened_for: float | None) -> float:
        """Record an unexpected exit; return the seconds to wait before the restart.

        Args:
            policy: the backoff.
            listened_for: how long the process was listening (None: it never got that far).
        """
        if listened_for is not None and listened_for >= policy.stable_after:
            self.failures = 0
        self.failures += 1
        self.restarts += 1
        return policy.delay(self.failures)


def next_to_roll(generations: Mapping[int, int], cutoff: int) -> int | None:
    """The slot a rolling restart replaces next, or None when the roll is done.

    Every process gets a generation number when started (counting up); a SIGHUP sets
    ``cutoff`` to the next number, so the slots due are those whose process is older. The
    oldest goes first (ties: the lower slot); a second SIGHUP during a roll raises ``cutoff``
    and so also rolls the processes the first one already replaced.

    Args:
        generations: slot -> generation of its live process (slots without one left out).
        cutoff: processes with a generation below this are due.
    """
    due = [(generation, slot) for slot, generation in generations.items() if generation < cutoff]
    return min(due)[1] if due else None


def worker_argv(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *, port: int, slot: int
) -> list[str]:
    """The ``rtwidgets gateway`` options a worker is started with: every option of ``args`` that
    differs from its default, except those the supervisor keeps (the secret, the port, the runtime
    file, the idle timeout, ``--workers``), then ``--port PORT --worker SLOT``.

    Args:
        parser: the ``gateway`` sub-command's parser (its options are rendered generically, so a
            new option reaches the workers without a change here).
        args: the parsed options.
        port: the port every worker listens on.
        slot: the worker's slot (0..N-1), for its log lines.
    """
    out: list[str] = []
    for action in parser._actions:  # argparse has no public list of a parser's options
        if action.dest in _NOT_FORWARDED or not action.option_strings:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default or value is None:
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if action.nargs == 0:  # store_true / store_const: the flag alone
            out.append(flag)
        elif isinstance(value, list):  # action="append": once per value
            for item in value:
                out += [flag, str(item)]
        else:
            out += [flag, str(value)]
    return [*out, "--port", str(port), "--worker", str(slot)]


# ----------------------------------------------------------------------------- the port


class PortReservation:
    """Sockets bound with ``SO_REUSEPORT`` on every address of ``host`` at one port, never
    listening: the workers (same user, also ``SO_REUSEPORT``) can bind it, nobody else can,
    also while every worker restarts. With port 0 the OS picks the port once, for all workers.

    Args:
        host: the interface(s) the workers listen on.
        port: the port (0: a free one; see :attr:`port`).

    Raises:
        OSError: the port cannot be bound (``EADDRINUSE`` also when another server already
            listens there with ``SO_REUSEPORT``, which would silently share it otherwise).
    """

    def __init__(self, host: str, port: int) -> None:
        self.sockets: list[socket.socket] = []
        self.port = port
        try:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            seen: set[tuple[int, object]] = set()
            for family, kind, proto, _, address in infos:
                if (family, address[0]) in seen:
                    continue
                seen.add((family, address[0]))
                self.sockets.append(self._bind(family, kind, proto, (address[0], self.port, *address[2:])))
                self.port = self.sockets[-1].getsockname()[1]  # port 0: the others take the same one
            self._refuse_if_served()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _bind(family: int, kind: int, proto: int, address: tuple[object, ...]) -> socket.socket:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's listeners
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio's listeners
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def _refuse_if_served(self) -> None:
        """Binding succeeds next to another ``SO_REUSEPORT`` listener of this user (e.g. a second
        ``--workers`` group): a connection that is accepted shows one is there."""
        for sock in self.sockets:
            host = sock.getsockname()[0]
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if sock.family == socket.AF_INET else "::1"
            try:
                probe = socket.create_connection((host, self.port), timeout=1.0)
            except OSError:
                continue  # refused: nobody listens there
            probe.close()
            raise OSError(errno.EADDRINUSE, "address already in use")

    def close(self) -> None:
        """Release the port (idempotent)."""
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ----------------------------------------------------------------------------- a worker's side


class WorkerStops:
    """The ways a worker is told to stop (see the module rules): SIGTERM sets ``stop``; SIGHUP
    sets it with :attr:`restart` (clients closed with 1012); EOF on stdin (the supervisor is
    gone) sets it; SIGINT is ignored. Call :meth:`install` on the worker's loop, :meth:`remove`
    when stopping.

    Args:
        stop: the event the worker's serve loop waits for.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.restart = False
        self._pipe: asyncio.BaseTransport | None = None

    def _on_sighup(self) -> None:
        self.restart = True
        self.stop.set()

    async def install(self) -> None:
        loop = asyncio.get_running_loop()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        stops = self

        class _Eof(asyncio.Protocol):
            def connection_lost(self, exc: Exception | None) -> None:
                if not stops.stop.is_set():
                    log.warning("the supervisor is gone (EOF on stdin): stopping")
                stops.stop.set()

        try:
            self._pipe, _ = await loop.connect_read_pipe(_Eof, sys.stdin)
        except (ValueError, OSError) as exc:  # not a pipe: started by hand, not by a supervisor
            log.warning("stdin is not the supervisor's pipe (%s): not watching it", exc)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
