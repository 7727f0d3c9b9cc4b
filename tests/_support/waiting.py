"""Waiting on a condition with a generous bound (never a fixed sleep, never a timing assertion).

The one wait helper of the tests, for both kinds of caller:

* :func:`wait_until` (sync): plain code, threads, processes, files, HTTP; a folder whose tests
  share one bound takes :func:`with_default_timeout` (``wait_until = with_default_timeout(10.0)``
  in its conftest) instead of repeating it at every call;
* :func:`eventually` (async): inside a running event loop; ``check`` may also return an
  awaitable (e.g. a broker query).

Rules of this module:

* A timeout is a bound for a loaded machine, not an expectation of speed: past it the wait
  fails the test with ``AssertionError`` naming ``what`` (and the last error tolerated, if any).
* The predicate is always tried once more after the deadline passes, so a slow machine that
  met the condition just in time is not reported as a failure.
* Errors are not swallowed unless the caller names them (``retry_on``); :class:`GiveUp` from a
  predicate always ends the wait at once (waiting longer cannot help: a process died).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["DEFAULT_TIMEOUT", "GiveUp", "eventually", "wait_until", "with_default_timeout"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0  # a bound for a loaded machine, not an expectation of speed


class GiveUp(RuntimeError):
    """Raised by a predicate when waiting longer cannot help (e.g. the awaited process died)."""


def _timed_out(what: str, timeout: float, last_error: BaseException | None) -> AssertionError:
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
    *,
    interval: float = 0.005,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``predicate()`` until it returns a truthy value, and return that value.

    Args:
        predicate: a cheap, synchronous check.
        timeout: the bound in seconds (see the rules above).
        what: what is awaited, for the failure message.
        interval: the pause between two polls (a polling interval, not a synchronisation sleep).
        retry_on: exception types that mean "not yet" (e.g. ``ConnectionRefusedError`` while a
            server starts); the last one is named if the wait times out.

    Raises:
        AssertionError: the condition did not hold within ``timeout``.
        GiveUp: raised by ``predicate``; passed on at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        expired = time.monotonic() > deadline
        try:
            value = predicate()
        except GiveUp:
            raise
        except retry_on as exc:
            last_error = exc
        else:
            if value:
                return value
        if expired:
            raise _timed_out(what, timeout, last_error)
        time.sleep(interval)


def with_default_timeout(default: float) -> Callable[..., Any]:
    """:func:`wait_until` with ``default`` as its timeout (for a folder's conftest); same arguments."""

    def wait(
        predicate: Callable[[], T],
        timeout: float = default,
        what: str = "condition",
        **options: Any,
    ) -> T:
        return wait_until(predicate, timeout, what, **options)

    return wait


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interval: float = 0.02,
) -> Any:
    """Await until ``check()`` returns a truthy value (awaiting it if it returns an awaitable).

    Args:
        check: a sync check (cheap, in-memory) or one returning an awaitable.
        what: what is awaited, for the failure message.
        timeout: the bound in seconds (see the rules above).
        interval: the pause between two checks; ``0`` only yields to the loop once, for a test
            that orders its own tasks step by step.

    Raises:
        AssertionError: the condition did not hold within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        expired = loop.time() > deadline
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if expired:
            raise _timed_out(what, timeout, None)
        await asyncio.sleep(interval)
