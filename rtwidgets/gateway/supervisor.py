"""The supervisor of ``rtwidgets gateway --workers N``: starts N worker processes and keeps them
running (the pure decisions it follows are in :mod:`rtwidgets.gateway.workers`).

Rules of this module:

* It serves nothing and binds nothing: the CLI reserves the port
  (:class:`~rtwidgets.gateway.workers.PortReservation`) and each worker listens on it itself.
* A worker is *ready* once it printed the CLI's readiness line on its stdout (a pipe to the
  supervisor); :meth:`Supervisor.start` returns only once all N are ready. The workers' stderr is
  the supervisor's, so their log lines (tagged with slot and pid) reach the same place.
* A worker that exits without being asked to is restarted after the backoff of
  :class:`~rtwidgets.gateway.workers.RestartPolicy`; each restart is counted and logged. A worker
  asked to stop (SIGTERM: shut down; SIGHUP: restart) is not restarted.
* SIGHUP rolls: each worker started before the signal is replaced in turn, oldest first
  (:func:`~rtwidgets.gateway.workers.next_to_roll`); the replacement listens *before* the old one
  gets SIGHUP (its clients are closed with 1012 and resume on the others), so N workers always
  listen. A replacement that fails to start ends the roll and leaves the old worker serving.
* One replacement of a slot at a time (a lock per slot): a crash restart and a roll never both
  start a process for the same slot.
* SIGINT/SIGTERM stop every worker (SIGTERM, SIGKILL past ``stop_timeout``); nothing is left
  running when :meth:`Supervisor.wait` returns or :meth:`Supervisor.start` raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .workers import READY_MARKER, RestartPolicy, SlotRecord, WorkersError, next_to_roll

__all__ = ["Supervisor"]

log = logging.getLogger("rtwidgets.workers")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass(eq=False)
class _Worker:
    slot: int
    generation: int
    proc: asyncio.subprocess.Process
    ready_at: float | None = None
    retiring: bool = False  # asked to stop: its exit is expected, not restarted
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def __str__(self) -> str:
        return f"worker {self.slot} (pid {self.proc.pid})"


class Supervisor:
    """Runs ``count`` worker processes and keeps them running (see the module rules).

    Use: ``if await sup.start(): ...print the readiness line...; await sup.wait()``.

    Args:
        count: how many workers (>= 1).
        command: slot -> the worker's full command line.
        env: the workers' environment (with the secret).
        ready_timeout: seconds a worker may take to print its readiness line.
        stop_timeout: seconds a worker may take to stop before it is killed.
        policy: the restart backoff.

    Raises:
        ValueError: ``count`` below 1.
    """

    def __init__(
        self,
        count: int,
        command: Callable[[int], Sequence[str]],
        env: Mapping[str, str],
        *,
        ready_timeout: float,
        stop_timeout: float = 30.0,
        policy: RestartPolicy | None = None,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.count = count
        self._command = command
        self._env = dict(env)
        self._ready_timeout = ready_timeout
        self._stop_timeout = stop_timeout
        self._policy = policy or RestartPolicy()
        self.records = [SlotRecord() for _ in range(count)]
        self._current: dict[int, _Worker] = {}
        self._alive: set[_Worker] = set()
        self._locks = [asyncio.Lock() for _ in range(count)]  # one replacement of a slot at a time
        self._generation = 0
        self._cutoff = 0
        self._started = False
        self._stopping = False
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._roll_task: asyncio.Task[None] | None = None

    @property
    def restarts(self) -> int:
        """Unexpected worker exits so far, over all slots."""
        return sum(record.restarts for record in self.records)

    def pids(self) -> list[int]:
        """The pids of the workers currently serving, by slot."""
        return [self._current[slot].proc.pid for slot in sorted(self._current)]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> bool:
        """Install the signal handlers and start every worker; True once all listen, False if a
        stop was requested first (everything is stopped then).

        Raises:
            WorkersError: a worker exited or timed out before listening (the others are stopped).
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_roll)
        spawns = [asyncio.ensure_future(self._spawn(slot)) for slot in range(self.count)]
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            pending: set[asyncio.Future[Any]] = {*spawns, stopped}
            while not stopped.done() and not all(s.done() for s in spawns):
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in done - {stopped}:
                    error = future.exception()
                    if error is not None:
                        raise error
            if not stopped.done():
                for spawn in spawns:
                    if not spawn.result().alive:  # it died before it could be watched as serving
                        raise WorkersError(f"{spawn.result()} exited right after it started listening")
        except BaseException as exc:
            await self._abort_start(spawns, stopped)
            if isinstance(exc, asyncio.TimeoutError):
                raise WorkersError(f"a worker did not listen within {self._ready_timeout:g}s") from None
            raise
        if stopped.done():
            await self._abort_start(spawns, stopped)
            return False
        stopped.cancel()
        for spawn in spawns:
            worker = spawn.result()
            self._current[worker.slot] = worker
        self._started = True
        log.info("%d workers listening (pids %s)", self.count, ", ".join(map(str, self.pids())))
        return True

    async def _abort_start(self, spawns: list[asyncio.Task[_Worker]], stopped: asyncio.Future[Any]) -> None:
        for task in (*spawns, stopped):
            task.cancel()
        await asyncio.gather(*spawns, stopped, return_exceptions=True)
        await self._stop_all()

    async def wait(self) -> None:
        """Serve until SIGINT/SIGTERM (or :meth:`request_stop`), then stop every worker."""
        try:
            await self._stop.wait()
        finally:
            await self._stop_all()

    def request_stop(self) -> None:
        """Stop every worker and end :meth:`wait` (what SIGINT and SIGTERM do)."""
        self._stop.set()

    def request_roll(self) -> None:
        """Replace every worker, one at a time (what SIGHUP does)."""
        if self._stopping:
            return
        if not self._started:
            log.warning("SIGHUP ignored: the workers are still starting")
            return
        self._cutoff = self._generation
        if self._roll_task is None or self._roll_task.done():
            log.info("rolling restart of %d workers", self.count)
            self._roll_task = asyncio.get_running_loop().create_task(self._roll())
        else:
            log.info("rolling restart already running: it goes on to the workers it already replaced")

    async def _stop_all(self) -> None:
        self._stopping = True
        self._stop.set()
        tasks = [*self._tasks, *([self._roll_task] if self._roll_task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        workers = list(self._alive)
        if workers:
            log.info("stopping %d workers", len(workers))
        await asyncio.gather(*(self._retire(worker, signal.SIGTERM) for worker in workers))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    # ------------------------------------------------------------------ one process

    async def _spawn(self, slot: int) -> _Worker:
        """Start a worker for ``slot`` and return it once it listens.

        Raises:
            WorkersError: it exited first.
            asyncio.TimeoutError: it did not listen within the ready timeout (it is killed).
        """
        generation = self._generation
        self._generation += 1
        proc = await asyncio.create_subprocess_exec(
            *self._command(slot),
            stdin=asyncio.subprocess.PIPE,  # never written: its EOF tells the worker we are gone
            stdout=asyncio.subprocess.PIPE,  # the readiness line
            env=self._env,
        )
        worker = _Worker(slot, generation, proc)
        self._alive.add(worker)
        loop = asyncio.get_running_loop()
        worker.tasks.append(loop.create_task(self._watch(worker)))
        try:
            await asyncio.wait_for(self._until_ready(worker), self._ready_timeout)
        except BaseException:
            worker.retiring = True
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
            raise
        worker.ready_at = loop.time()
        worker.tasks.append(loop.create_task(self._drain(worker)))
        log.info("%s listening", worker)
        return worker

    async def _until_ready(self, worker: _Worker) -> None:
        assert worker.proc.stdout is not None
        while True:
            line = await worker.proc.stdout.readline()
            if not line:
                code = await worker.proc.wait()
                # Its own reason is on the shared stderr, just before the supervisor's line.
                raise WorkersError(
                    f"{worker} exited ({_describe_exit(code)}) before listening (its error is above)"
                )
            if READY_MARKER in line.decode(errors="replace"):
                return

    async def _drain(self, worker: _Worker) -> None:
        """Read the rest of the worker's stdout (it writes nothing more; a full pipe would block it)."""
        assert worker.proc.stdout is not None
        while line := await worker.proc.stdout.readline():
            log.info("%s wrote to stdout: %s", worker, line.decode(errors="replace").rstrip())

    async def _watch(self, worker: _Worker) -> None:
        code = await worker.proc.wait()
        self._alive.discard(worker)
        if worker.retiring or self._stopping:
            log.info("%s stopped (%s)", worker, _describe_exit(code))
            return
        if self._current.get(worker.slot) is not worker:
            return  # not serving yet (start-up fails on its own) or already replaced
        loop = asyncio.get_running_loop()
        listened_for = None if worker.ready_at is None else loop.time() - worker.ready_at
        record = self.records[worker.slot]
        delay = record.exited(self._policy, listened_for)
        log.warning(
            "%s exited unexpectedly (%s); restarting it in %.1fs (restart %d of worker %d, %d in all)",
            worker, _describe_exit(code), delay, record.restarts, worker.slot, self.restarts,
        )  # fmt: skip
        task = loop.create_task(self._restart(worker, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self, dead: _Worker, delay: float) -> None:
        slot = dead.slot
        record = self.records[slot]
        while True:
            await asyncio.sleep(delay)
            async with self._locks[slot]:
                if self._stopping or self._current.get(slot) is not dead:
                    return  # stopping, or a rolling restart replaced it meanwhile
                try:
                    worker = await self._spawn(slot)
                except (WorkersError, asyncio.TimeoutError, OSError) as exc:
                    delay = record.exited(self._policy, None)
                    why = exc or "timeout"
                    log.warning("worker %d did not restart (%s); next try in %.1fs", slot, why, delay)
                    continue
                self._current[slot] = worker
            log.info("%s restarted (restart %d of worker %d)", worker, record.restarts, slot)
            return

    async def _retire(self, worker: _Worker, sig: signal.Signals) -> None:
        """Ask ``worker`` to stop with ``sig``; kill it past the stop timeout; return once it exited."""
        worker.retiring = True
        if worker.alive:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(sig)
        try:
            await asyncio.wait_for(asyncio.shield(worker.proc.wait()), self._stop_timeout)
        except asyncio.TimeoutError:
            log.warning("%s did not stop within %gs: killing it", worker, self._stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
            await worker.proc.wait()
        await asyncio.gather(*worker.tasks, return_exceptions=True)

    async def _roll(self) -> None:
        while not self._stopping:
            live = {slot: w.generation for slot, w in self._current.items() if w.alive}
            slot = next_to_roll(live, self._cutoff)
            if slot is None:
                log.info("rolling restart done: %d workers listening", len(live))
                return
            async with self._locks[slot]:
                old = self._current[slot]
                if not old.alive or old.generation >= self._cutoff:
                    continue  # it died meanwhile: its restart gives the slot a new process
                try:
                    new = await self._spawn(slot)
                except (WorkersError, asyncio.TimeoutError, OSError) as exc:
                    log.error("rolling restart stopped: a new worker %d did not start (%s); %s keeps serving",
                              slot, exc or "timeout", old)  # fmt: skip
                    return
                self._current[slot] = new
                await self._retire(old, signal.SIGHUP)  # its clients: 1012, they resume on the others
            log.info("rolling restart: worker %d replaced (pid %d -> %d)", slot, old.proc.pid, new.proc.pid)
