"""A broker listener for broker tests: records every frame a broker delivers, awaits conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

WAIT = 10.0  # generous: condition waits, not timing assertions


class Collector:
    """A ``Broker.set_listener`` callback that records ``(channel, frame, encoded)`` in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any], bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, frame: dict[str, Any], encoded: bytes) -> None:
        self.frames.append((channel, frame, encoded))
        self._changed.set()

    def of(self, channel: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The frames of ``channel`` (of type ``kind`` if given), in delivery order."""
        return [f for c, f, _ in self.frames if c == channel and (kind is None or f.get("type") == kind)]

    async def wait(self, predicate: Callable[[], bool], what: str = "condition") -> None:
        """Wait until ``predicate()`` holds, re-checking after each delivered frame."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; got {self.frames!r}") from None


def msg(data: Any, **extra: Any) -> dict[str, Any]:
    """A ``message`` frame as a gateway hands it to ``Broker.publish`` (sender ``u1``)."""
    return {"type": "message", "data": data, "senderId": "u1", **extra}
