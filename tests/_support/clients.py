"""Client-test helpers: the reconnect pacing the tests use, and a gate that holds reconnects
back until a test opens it (an ``auth`` callback)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from rtwidgets.client import RealtimeConnection
from rtwidgets.core.connection import ReconnectConfig

FAST = ReconnectConfig(base_delay=0.02, max_delay=0.1)
MakeClient = Callable[..., Awaitable[RealtimeConnection]]


class Gate:
    """An ``auth`` callback that can be held closed: reconnects wait until it opens."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.open = asyncio.Event()
        self.open.set()
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await self.open.wait()
        return self.token


