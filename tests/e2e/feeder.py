"""A high-rate publisher for the LiveChart test: a raw WebSocket client on its own thread.

It publishes ``{"y": value}`` messages to one channel at ``rate`` messages per second
(in small bursts that catch up with the schedule, so the average holds on a busy
machine) until :meth:`Feeder.stop`. Every frame the gateway sends back is read (so its
send buffer never fills) and ``error`` frames are kept in :attr:`errors`: a test fails
on them instead of losing them.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from typing import Any

from websockets.asyncio.client import connect

__all__ = ["Feeder"]


class Feeder:
    """Publish to ``channel`` on the gateway at ``url`` with ``token`` at ``rate`` msg/s."""

    def __init__(self, url: str, token: str, channel: str, rate: float) -> None:
        self.url = url
        self._token = token
        self.channel = channel
        self.rate = rate
        self.sent = 0
        self.errors: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="e2e-feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        if not self.connected.wait(60):
            self.stop()
            raise TimeoutError(f"the feeder could not connect to {self.url}: {self._failure!r}")
        return self

    def stop(self) -> None:
        """Stop publishing; re-raise a failure of the feeder thread."""
        self._stop.set()
        self._thread.join(30)
        if self._failure is not None:
            raise RuntimeError("the feeder failed") from self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        async with connect(f"{self.url}/?token={self._token}", ping_interval=None, max_queue=None) as ws:
            hello = json.loads(await ws.recv())
            if hello.get("type") != "connected":
                raise RuntimeError(f"the gateway refused the feeder: {hello}")
            reader = asyncio.ensure_future(self._read(ws))
            self.connected.set()
            start = loop.time()
            try:
                while not self._stop.is_set():
                    due = int((loop.time() - start) * self.rate) - self.sent
                    for _ in range(max(0, due)):
                        n = self.sent
                        value = math.sin(n / 200.0) + 0.25 * math.sin(n / 13.0)
                        frame = {"type": "publish", "channel": self.channel, "data": {"y": value}}
                        await ws.send(json.dumps(frame))
                        self.sent += 1
                    # Pacing of a producer (the stream's own clock), not a test synchronisation.
                    await asyncio.sleep(0.005)
            finally:
                reader.cancel()

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame.get("type") == "error":
                self.errors.append(frame)
