"""The rtwidgets runtime: one background thread running one asyncio event loop.

Gateways and client connections created from synchronous code (a notebook cell, a
widget handler running on a kernel subshell thread) live on this loop, so they keep
serving while the kernel's own loop is blocked by a long cell. Work crosses threads
only through :meth:`Runtime.run`, :meth:`Runtime.submit` and :meth:`Runtime.call_soon`
(``run_coroutine_threadsafe`` / ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Runtime", "await_on_loop", "get_runtime", "stop_on_loop"]

T = TypeVar("T")


class Runtime:
    """A daemon thread hosting an event loop. Thread-safe; start is lazy and idempotent."""

    def __init__(self, name: str = "rtwidgets-runtime") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runtime's loop, starting the thread on first use."""
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                self._start_locked()
            assert self._loop is not None
            return self._loop

    def _start_locked(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                try:
                    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                    for task in pending:
                        task.cancel()
                    if pending:
                        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        thread = threading.Thread(target=main, name=self._name, daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def in_runtime_thread(self) -> bool:
        """True when called from the runtime's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the runtime loop; return a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the runtime loop and wait for its result from another thread.

        Raises ``RuntimeError`` if called from the runtime thread itself (that would
        deadlock), and ``TimeoutError`` after ``timeout`` seconds (the coroutine is
        cancelled).
        """
        if self.in_runtime_thread():
            coro.close()
            raise RuntimeError("Runtime.run() called from the runtime thread; await instead")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"operation did not finish within {timeout} s") from None

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on the runtime loop (fire and forget, thread-safe)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and join the thread; tasks still running are cancelled."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)


async def await_on_loop(loop: asyncio.AbstractEventLoop, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Await ``make()`` on ``loop``: directly when it is the running loop, else thread-safely there.

    For objects bound to the loop they started on (e.g. a gateway started on the runtime thread
    and stopped from another loop). ``loop`` must be running.
    """
    if asyncio.get_running_loop() is loop:
        return await make()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))


def stop_on_loop(
    loop: asyncio.AbstractEventLoop,
    make: Callable[[], Coroutine[Any, Any, Any]],
    timeout: float | None,
    *,
    owner: str,
) -> bool:
    """The synchronous ``stop()`` of an object bound to ``loop``: run ``make()`` (its stop
    coroutine) there from another thread and block until it is done.

    Returns False, without calling ``make``, when ``loop`` no longer runs (nothing can be
    awaited there; the caller should just forget its loop-bound state). Raises RuntimeError
    when called on ``loop`` itself, where blocking would deadlock (``owner`` names the object in
    the message, e.g. ``"Gateway"``), and ``TimeoutError`` after ``timeout`` seconds (the stop
    then goes on in the background).
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError(f"{owner}.stop() called on the {owner}'s own event loop; await stop_async()")
    if loop.is_closed() or not loop.is_running():
        return False
    asyncio.run_coroutine_threadsafe(make(), loop).result(timeout)
    return True


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime used by ``Gateway.start()`` and the sync client API."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
            atexit.register(_runtime.stop)
        return _runtime
