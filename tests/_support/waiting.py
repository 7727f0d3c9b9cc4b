"""Waiting on a condition with a generous bound (never a fixed sleep, never a timing assertion)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

DEFAULT_TIMEOUT = 30.0  # a bound for a loaded machine, not an expectation of speed


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], what: str, timeout: float = DEFAULT_TIMEOUT
) -> Any:
    """Poll ``check()`` until it returns a truthy value, and return that value.

    ``check`` may be sync (cheap, in-memory) or return an awaitable (e.g. a broker query).
    Raises ``AssertionError`` naming ``what`` once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
