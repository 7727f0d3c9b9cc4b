"""Helpers shared by the reliability tests (processes, clients, waiting on conditions).

Everything waits on conditions with generous timeouts; nothing relies on a fixed sleep.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

TIMEOUT = 10.0


async def open_ws(url: str, **kwargs: Any) -> ClientConnection:
    """A raw websockets client with test-friendly defaults (no keepalive)."""
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("open_timeout", TIMEOUT)
    return await ws_connect(url, **kwargs)
