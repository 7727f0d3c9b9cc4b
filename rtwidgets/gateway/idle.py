"""When a gateway has been idle long enough to stop: ``rtwidgets gateway --idle-timeout``.

:class:`IdleClock` is pure (times are passed in, on one monotonic clock); :func:`watch_idle`
samples a running gateway with it and returns once it should stop.

Rules of this module:

* Idle means no open connection for ``timeout`` seconds in a row: any sample with a connection
  restarts the count, and so does an *attach* (a kernel found the gateway through its runtime
  file, which touches the file: see :mod:`rtwidgets.gateway.discovery`), since that kernel's
  client is about to connect.
* With a runtime file, the decision is taken again under the runtime directory's lock, and the
  file is removed under it before the gateway stops: a kernel looking for the gateway then
  either finds it still serving or finds no file and starts a new one, never a file naming a
  gateway that is going away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from .runtime_file import RuntimeLock, RuntimePaths, remove_record

__all__ = ["IdleClock", "watch_idle"]

log = logging.getLogger("rtwidgets.gateway")


class IdleClock:
    """Counts idle time from the last moment something was busy.

    Args:
        timeout: seconds without a connection (or attach) after which :meth:`expired` is True.
        now: the start time (a fresh gateway counts as busy when it starts).

    Raises:
        ValueError: ``timeout`` is not a positive number.
    """

    def __init__(self, timeout: float, now: float) -> None:
        if not timeout > 0:
            raise ValueError(f"idle timeout must be positive, got {timeout!r}")
        self.timeout = timeout
        self._busy_at = now

    def sample(self, connections: int, now: float, attached_at: float | None = None) -> None:
        """Record what is seen at ``now``: open ``connections`` and the latest attach time."""
        if connections > 0:
            self._busy_at = max(self._busy_at, now)
        if attached_at is not None:
            self._busy_at = max(self._busy_at, attached_at)

    def idle_for(self, now: float) -> float:
        """Seconds since the gateway was last busy (0 if busy later than ``now``)."""
        return max(0.0, now - self._busy_at)

    def expired(self, now: float) -> bool:
        return self.idle_for(now) >= self.timeout


def _attached_at(record: Path | None, now: float) -> float | None:
    """The runtime file's mtime on the monotonic clock of ``now`` (None without a file).

    The mtime is wall-clock time; only its age is used, so a wall-clock jump shifts one attach at
    most.
    """
    if record is None:
        return None
    try:
        mtime = record.stat().st_mtime
    except OSError:
        return None
    return now - max(0.0, time.time() - mtime)


async def watch_idle(
    connections: Callable[[], int],
    timeout: float,
    runtime_file: Path | None = None,
    *,
    lock_timeout: float = 30.0,
) -> None:
    """Return once the gateway was idle for ``timeout`` seconds (see the module rules).

    Args:
        connections: the number of open connections now (called on the running loop).
        timeout: the idle time that ends the wait.
        runtime_file: the gateway's runtime file: touched by attaches, removed (if it still
            names this process) before returning.
        lock_timeout: how long to wait for the runtime directory's lock before checking again.
    """
    loop = asyncio.get_running_loop()
    clock = IdleClock(timeout, loop.time())
    # Polling a gauge: a quarter of the timeout keeps the overshoot small, 1 s keeps it cheap.
    interval = min(1.0, timeout / 4)
    while True:
        await asyncio.sleep(interval)
        now = loop.time()
        clock.sample(connections(), now, _attached_at(runtime_file, now))
        if not clock.expired(now):
            continue
        if runtime_file is None:
            log.info("no connection for %.3g s: stopping", clock.idle_for(now))
            return
        lock = RuntimeLock(RuntimePaths(runtime_file.parent).lock)
        try:
            await asyncio.to_thread(lock.acquire, lock_timeout)
        except Exception as exc:  # a kernel holds the lock for long: it is using us, check again
            log.info("idle, but the runtime lock is busy (%s): staying up", exc)
            continue
        try:
            now = loop.time()
            clock.sample(connections(), now, _attached_at(runtime_file, now))
            if clock.expired(now):
                remove_record(runtime_file, os.getpid())
                log.info("no connection for %.3g s: stopping", clock.idle_for(now))
                return
        finally:
            lock.release()
