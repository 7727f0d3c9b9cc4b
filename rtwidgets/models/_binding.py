"""Glue between traitlets objects and the rtwidgets runtime loop.

Rules of this module:

* Everything that touches a network object or a core runs on the runtime loop thread
  (:func:`rtwidgets.runtime.get_runtime`). Public model/widget methods may be called from
  any thread (a notebook cell, a kernel subshell running a widget handler) and hand work
  over with :func:`on_runtime` / :func:`submit`.
* Timers are loop timers driven by a core's ``next_deadline()`` (the cores are sans-I/O:
  they never schedule anything themselves). The clock handed to the cores is
  ``loop.time()`` so a deadline can be passed to ``loop.call_at`` unchanged.
* :class:`CoalescedSync` is the only way widgets write their synced traits from network
  events: at most ``max_rate`` flushes per second, latest value per trait wins
  (:class:`rtwidgets.core.coalesce.Coalescer` decides; this class only moves the values).
* Jupyter drops iopub messages above about 1000/s per kernel, whatever widget sends them, so
  every live :class:`CoalescedSync` also draws on one process-wide :class:`SharedRateBudget`
  (default :data:`DEFAULT_MESSAGE_BUDGET` flushes/s, env ``RTWIDGETS_MESSAGE_BUDGET``,
  :func:`set_message_budget`): its rate is ``min(max_rate, its fair share)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from traitlets import HasTraits

from rtwidgets.core.coalesce import Coalescer, RateBudget
from rtwidgets.runtime import Runtime, get_runtime

__all__ = [
    "DEFAULT_MESSAGE_BUDGET",
    "MESSAGE_BUDGET_ENV",
    "CoalescedSync",
    "DeadlineTimer",
    "LoopClock",
    "SharedRateBudget",
    "TaskGroup",
    "message_budget",
    "on_runtime",
    "run_blocking",
    "set_message_budget",
    "submit",
]

T = TypeVar("T")
log = logging.getLogger("rtwidgets.models")

# The coalescer key of a set_later() computation (never a trait name).
_COMPUTED = object()


def on_runtime(fn: Callable[..., Any], *args: Any, runtime: Runtime | None = None) -> None:
    """Call ``fn(*args)`` on the runtime thread: now if already there, else soon (thread-safe)."""
    rt = runtime or get_runtime()
    if rt.in_runtime_thread():
        fn(*args)
    else:
        rt.call_soon(fn, *args)


def submit(coro: Coroutine[Any, Any, T], runtime: Runtime | None = None) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the runtime loop from any thread; return a thread-safe future."""
    return (runtime or get_runtime()).submit(coro)


def run_blocking(coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
    """Run ``coro`` on the runtime and wait for it from a non-runtime thread.

    Raises ``RuntimeError`` with advice when called from the runtime thread itself (a
    callback), where blocking would deadlock the loop.
    """
    rt = get_runtime()
    if rt.in_runtime_thread():
        coro.close()
        raise RuntimeError(f"{what}: cannot block on the rtwidgets runtime thread; pass wait=False")
    return rt.run(coro, timeout)


class DeadlineTimer:
    """One loop timer that fires ``callback(now)`` at the earliest requested deadline.

    Runtime-thread only. ``schedule(deadline)`` keeps the earlier of the current and the new
    deadline, so callers can request freely after every input without piling up handles.
    ``now`` is ``max(loop.time(), deadline)``: asyncio may fire up to one clock resolution
    early, and a core polled a hair before its deadline would answer "not yet".
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[float], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._closed = False

    def schedule(self, deadline: float | None) -> None:
        """Fire at ``deadline`` (``loop.time()`` seconds); ``None`` means nothing is due."""
        if self._closed or deadline is None:
            return
        if self._handle is not None:
            if self._handle.when() <= deadline:
                return
            self._handle.cancel()
        self._handle = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        handle, self._handle = self._handle, None
        if not self._closed:
            when = handle.when() if handle is not None else 0.0
            self._callback(max(self._loop.time(), when))

    @property
    def pending(self) -> bool:
        """True while a firing is scheduled."""
        return self._handle is not None

    def cancel(self) -> None:
        """Cancel the scheduled firing and refuse new ones."""
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class LoopClock:
    """``loop.time()`` clamped to never go backwards across calls.

    The cores refuse time going backwards, and a timer's ``now`` (see :class:`DeadlineTimer`)
    can be a hair ahead of a later ``loop.time()`` reading.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last = loop.time()

    def __call__(self, at_least: float = 0.0) -> float:
        now = max(self._loop.time(), at_least, self._last)
        self._last = now
        return now


# Comm messages per second shared by all widgets of the process: Jupyter's iopub limit is about
# 1000/s per kernel; the rest is headroom for outputs, custom messages and other libraries.
DEFAULT_MESSAGE_BUDGET = 800.0
# A CoalescedSync with nothing queued for this long counts as idle in the budget (its share,
# but for a trickle, goes to the busy widgets) until its next ``set``.
IDLE_AFTER = 1.0
MESSAGE_BUDGET_ENV = "RTWIDGETS_MESSAGE_BUDGET"


class SharedRateBudget:
    """A thread-safe :class:`RateBudget` (widgets are created and closed from any thread).

    ``version`` is read without the lock on every flush (an int attribute read is atomic);
    a member re-reads its share under the lock only when it moved.
    """

    def __init__(self, total_rate: float = DEFAULT_MESSAGE_BUDGET) -> None:
        self._budget = RateBudget(total_rate)
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        return self._budget.version

    @property
    def total_rate(self) -> float:
        return self._budget.total_rate

    def set_total_rate(self, total_rate: float) -> None:
        with self._lock:
            self._budget.set_total_rate(total_rate)

    def join(self, max_rate: float) -> int:
        with self._lock:
            return self._budget.join(max_rate)

    def leave(self, member: int) -> None:
        with self._lock:
            self._budget.leave(member)

    def set_cap(self, member: int, max_rate: float) -> None:
        """Change a member's own cap (:meth:`RateBudget.set_cap`); KeyError once it left."""
        with self._lock:
            self._budget.set_cap(member, max_rate)

    def share(self, member: int) -> float:
        """The member's current rate (KeyError once it left)."""
        with self._lock:
            return self._budget.share(member)

    def set_idle(self, member: int, idle: bool) -> None:
        """Mark a member idle or busy (:meth:`RateBudget.set_idle`); KeyError once it left."""
        with self._lock:
            self._budget.set_idle(member, idle)

    def is_idle(self, member: int) -> bool:
        with self._lock:
            return self._budget.is_idle(member)

    def share_and_version(self, member: int) -> tuple[float, int]:
        """``(rate, version)`` read together, so a concurrent change is seen on the next check."""
        with self._lock:
            return self._budget.share(member), self._budget.version

    def __len__(self) -> int:
        with self._lock:
            return len(self._budget)


_shared_budget: SharedRateBudget | None = None
_shared_budget_lock = threading.Lock()


def _budget_from_env() -> float:
    raw = os.environ.get(MESSAGE_BUDGET_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MESSAGE_BUDGET
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{MESSAGE_BUDGET_ENV}={raw!r}: expected a positive number of comm messages per second "
            f"(default {DEFAULT_MESSAGE_BUDGET:g})"
        )
    return value


def message_budget() -> SharedRateBudget:
    """The process-wide budget every widget's :class:`CoalescedSync` shares (created on first use,
    from ``RTWIDGETS_MESSAGE_BUDGET`` when set)."""
    global _shared_budget
    with _shared_budget_lock:
        if _shared_budget is None:
            _shared_budget = SharedRateBudget(_budget_from_env())
        return _shared_budget


def set_message_budget(total_per_s: float) -> None:
    """Set how many comm messages per second all rtwidgets widgets together may send.

    Live widgets adopt their new share at their next update. Raises ``ValueError`` /
    ``TypeError`` for a non-positive or non-numeric value.

    Args:
        total_per_s: the total, in messages per second (finite, > 0).

    Raises:
        TypeError: ``total_per_s`` is not a number.
        ValueError: ``total_per_s`` is not finite and > 0.
    """
    message_budget().set_total_rate(total_per_s)


def _idle_timer_fired(ref: weakref.ref[CoalescedSync], when: float) -> None:
    sync = ref()
    if sync is not None:
        sync._check_idle(sync._clock(when))


def _schedule_idle_check(ref: weakref.ref[CoalescedSync]) -> None:
    sync = ref()
    if sync is not None and not sync._closed:
        sync._idle_timer.schedule(sync._last_update + IDLE_AFTER)


class CoalescedSync:
    """Write trait values to ``target`` at most ``max_rate`` times per second.

    ``set(name=value, ...)`` may be called from any thread; values pass through a
    :class:`Coalescer` on the runtime thread and are applied together (one
    ``hold_sync`` block, so a widget sends one comm message per flush) when it allows.
    ``flushes`` counts applied batches. Values must not be mutated after ``set``: pass
    fresh lists/dicts (traitlets compares them to decide whether to notify).

    With ``apply``, each flush calls ``apply(batch)`` (on the runtime thread) instead of
    setting traits on ``target``: for paced output that is not a widget's traits, e.g. changes
    going to the network at the budget's rate (:func:`rtwidgets.share`).

    The effective rate is ``min(max_rate, share of budget)``: ``budget`` defaults to the
    process-wide :func:`message_budget`, left on :meth:`close`. After ``IDLE_AFTER`` seconds
    without anything to send the sync marks itself idle in the budget (the busy widgets share
    its rate); its next ``set`` marks it busy again before flushing, without delay.
    """

    def __init__(
        self,
        target: HasTraits | None,
        max_rate: float = 60.0,
        runtime: Runtime | None = None,
        budget: SharedRateBudget | None = None,
        apply: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if target is None and apply is None:
            raise TypeError("CoalescedSync needs a target to set traits on, or an apply(batch) callable")
        self._target = target
        self._apply_batch = apply
        self._runtime = runtime or get_runtime()
        self._loop = self._runtime.loop
        self._clock = LoopClock(self._loop)
        self._coalescer = Coalescer(max_rate=max_rate)  # validates max_rate before joining
        self._budget = budget if budget is not None else message_budget()
        self._member = self._budget.join(max_rate)
        # Leave on close, or when collected unclosed, so a lost widget does not keep a share.
        self._leave = weakref.finalize(self, self._budget.leave, self._member)
        self._budget_version = -1
        self._adopt_share()
        self._timer = DeadlineTimer(self._loop, lambda when: self._flush(self._clock(when)))
        self._idle = False
        self._last_update = self._clock()
        # The idle timer may wait a second: it holds the sync weakly, so an unclosed sync that is
        # dropped is still collected (and leaves the budget) meanwhile.
        this = weakref.ref(self)
        self._idle_timer = DeadlineTimer(self._loop, lambda when: _idle_timer_fired(this, when))
        self._closed = False
        self._inbox: dict[str, Any] = {}  # set() values from other threads, until drained
        self._inbox_lock = threading.Lock()
        self._inbox_scheduled = False
        # A sync that never gets a value must become idle too (its timer lives on the runtime loop).
        on_runtime(_schedule_idle_check, this, runtime=self._runtime)
        self.flushes = 0
        # When each of the last 1000 flushes happened (loop clock, seconds): the coalescer's own
        # time base, so a rate check over it is exact (no stamping jitter).
        self.flush_times: deque[float] = deque(maxlen=1000)

    @property
    def max_rate(self) -> float:
        """The flush rate now in force (this widget's share of the budget)."""
        return self._coalescer.max_rate

    def set_cap(self, max_rate: float) -> None:
        """Change this sync's own cap (at most ``max_rate`` flushes/s, and never more than its
        share of the budget); the next flush adopts it. Thread-safe; ignored once closed.

        Raises:
            ValueError: ``max_rate`` is not a positive finite number.
        """
        with contextlib.suppress(KeyError):  # closed from another thread meanwhile
            self._budget.set_cap(self._member, max_rate)

    def _adopt_share(self) -> None:
        try:
            rate, self._budget_version = self._budget.share_and_version(self._member)
        except KeyError:
            return  # closed from another thread meanwhile: nothing more will be flushed
        if rate != self._coalescer.max_rate:
            self._coalescer.set_max_rate(rate)

    def set(self, **values: Any) -> None:
        """Queue trait updates (thread-safe); the latest value per trait wins.

        From another thread, values wait in an inbox that one hand-off to the runtime thread
        drains: a widget changed thousands of times a second costs one thread hop per drain,
        not one per change (measured in benchmark B9: the hop per change was most of the CPU).
        """
        if self._closed:
            return
        if self._runtime.in_runtime_thread():
            self._update(values)
            return
        with self._inbox_lock:
            self._inbox.update(values)
            if self._inbox_scheduled:
                return
            self._inbox_scheduled = True
        self._runtime.call_soon(self._drain_inbox)

    def _drain_inbox(self) -> None:
        with self._inbox_lock:
            values, self._inbox = self._inbox, {}
            self._inbox_scheduled = False
        if values:
            self._update(values)

    def refresh(self, read: Callable[[], Mapping[str, Any]]) -> None:
        """Queue the values ``read()`` returns, calling ``read`` on the runtime thread.

        For catching up with a model whose traits change on the runtime thread: a snapshot read
        on the caller's thread could be queued after a newer update and win as "latest" (stale
        state). Read there, it is ordered with every change.
        """
        if self._closed:
            return
        on_runtime(lambda: None if self._closed else self._update(dict(read())), runtime=self._runtime)

    def set_later(self, compute: Callable[[float], Mapping[str, Any]]) -> None:
        """Queue values computed at flush time (thread-safe): the flush calls ``compute(now)``
        on the runtime thread (``now``: loop clock) and applies the returned ``{trait: value}``
        with the rest of the batch (after any ``set`` values, so it wins over them).

        For state that changes faster than the flush rate and is costly to build (a chart's
        window): it is built once per flush, from the newest data, instead of once per change.
        The latest ``compute`` queued before a flush is the one called.
        """
        if self._closed:
            return
        on_runtime(self._update, {_COMPUTED: compute}, runtime=self._runtime)

    @property
    def idle(self) -> bool:
        """Whether this sync counts as idle in the budget now."""
        return self._idle

    @property
    def budget_share(self) -> float:
        """This sync's share of the budget now (what its next flush adopts as ``max_rate``)."""
        try:
            return self._budget.share(self._member)
        except KeyError:
            return self._coalescer.max_rate  # closed: the last rate in force

    def _update(self, values: dict[Any, Any]) -> None:
        if self._closed:
            return
        now = self._clock()
        self._last_update = now
        if self._idle:
            self._set_idle(False)  # moves the budget's version: _flush adopts the full share
        for name, value in values.items():
            self._coalescer.update(name, value, now)
        self._flush(now)

    def _flush(self, now: float) -> None:
        if self._closed:
            return
        if self._budget.version != self._budget_version:
            self._adopt_share()  # another widget came or went: the rate may have changed
        batch = self._coalescer.poll(now)
        if batch:
            self.flush_times.append(now)
            self._apply(batch, now)
        self._timer.schedule(self._coalescer.next_deadline())
        if not self._idle:
            self._idle_timer.schedule(self._last_update + IDLE_AFTER)

    def _check_idle(self, now: float) -> None:
        if self._closed or self._idle:
            return
        due = self._last_update + IDLE_AFTER
        pending = self._coalescer.next_deadline()
        if now < due or pending is not None:
            self._idle_timer.schedule(max(due, pending or due))
            return
        self._set_idle(True)

    def _set_idle(self, idle: bool) -> None:
        self._idle = idle
        with contextlib.suppress(KeyError):  # closed from another thread meanwhile
            self._budget.set_idle(self._member, idle)

    def _apply(self, batch: dict[Any, Any], now: float) -> None:
        target = self._target
        hold = getattr(target, "hold_sync", None)
        names = sorted(str(k) for k in batch if k is not _COMPUTED)
        try:
            compute = batch.pop(_COMPUTED, None)
            if compute is not None:
                computed = compute(now)
                names += sorted(computed)
                batch.update(computed)
            if self._apply_batch is not None:
                self._apply_batch(batch)
            else:
                assert target is not None  # __init__ requires a target or apply
                sync_held = hold() if hold is not None else contextlib.nullcontext()
                with sync_held, target.hold_trait_notifications():
                    for name, value in batch.items():
                        setattr(target, name, value)
        except Exception:
            # A bad value must not kill the loop timer; it is a bug, so say it loudly.
            log.exception("could not apply %s to %r", names, type(target).__name__)
        self.flushes += 1

    def flush_now(self) -> None:
        """Apply whatever is pending immediately (runtime thread only; used on close)."""
        if self._closed:
            return
        now = self._clock()
        batch = self._coalescer.drain(now)
        if batch:
            self.flush_times.append(now)
            self._apply(batch, now)

    def close(self) -> None:
        """Cancel the timer and return this widget's share to the budget; later ``set`` calls
        are ignored. Idempotent."""
        self._closed = True
        self._timer.cancel()
        self._idle_timer.cancel()
        self._leave()  # runs once


class TaskGroup:
    """Tracks tasks a model starts on the runtime loop so ``close()`` can cancel them all."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start ``coro`` as a task (runtime thread only); failures are logged, not lost."""
        task = asyncio.get_running_loop().create_task(coro)
        with self._lock:
            self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self._name, exc_info=task.exception())

    def cancel_all(self) -> None:
        """Cancel every running task (runtime thread or not)."""
        with self._lock:
            tasks = list(self._tasks)
        for task in tasks:
            task.get_loop().call_soon_threadsafe(task.cancel)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)
