"""Event loops for the command line: uvloop when it is there, and running one coroutine on a fresh
loop (``asyncio.Runner`` on Python 3.11+, the same steps by hand on 3.10).

Rules of this module:

* uvloop is optional: its absence is not an error, and ``no_uvloop`` always wins.
* A loop made here is left clean: leftover tasks cancelled, async generators and the default
  executor finished, the loop closed, also when the coroutine raises.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["loop_factory", "run", "run_without_runner"]


def loop_factory(no_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when it is importable and not refused, else None (asyncio's).

    uvloop makes every ``transport.write`` of the fan-out C code; it is optional, so its
    absence is not an error.
    """
    if no_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, int], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> int:
    """Run ``main`` to completion on a new loop from ``loop_factory`` (asyncio's when None).

    ``asyncio.Runner`` where there is one (Python 3.11+), else :func:`run_without_runner`.
    """
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main)
    return run_without_runner(main, loop_factory)


def run_without_runner(
    main: Coroutine[Any, Any, int], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> int:
    """What ``asyncio.Runner`` does, for Python 3.10: run ``main`` on a fresh loop set as the
    current one, then cancel the tasks left over, finish async generators and the default
    executor, and close the loop (also when ``main`` raises)."""
    loop = (loop_factory or asyncio.new_event_loop)()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            left = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
