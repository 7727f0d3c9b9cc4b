"""Frames for a connection that closed meanwhile are counted, not skipped silently.

The real trigger: a broker call outlives the client's socket, so the gateway's answer has no
open connection left. A :class:`MemoryBroker` whose ``publish`` waits on an event holds the
call until the client has closed; clients are real WebSockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from rtwidgets.gateway.brokers.memory import MemoryBroker

TIMEOUT = 10.0  # generous: a condition that does not hold within this is a failure, not slowness


class HeldBroker(MemoryBroker):
    """``publish`` starts, then waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def publish(self, channel: str, frame: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.entered.set()
        await self.release.wait()
        return await super().publish(channel, frame, **kwargs)


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        return resp.read().decode()


async def test_ack_for_a_closed_connection_is_counted(make_gateway, connect) -> None:
    broker = HeldBroker()
    gw = await make_gateway(broker=broker)
    assert gw.stats()["frames_dropped_closed"] == 0
    alice = await connect(gw, "alice")
    await alice.subscribe("room")
    await alice.send(json.dumps({"type": "publish", "channel": "room", "data": 1, "_id": 7}))
    await asyncio.wait_for(broker.entered.wait(), TIMEOUT)
    # The close handshake completes before the broker answers: the ack has nowhere to go.
    await asyncio.wait_for(alice.ws.close(), TIMEOUT)
    broker.release.set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while gw.stats()["frames_dropped_closed"] == 0:
        assert loop.time() < deadline, "the dropped ack was never counted"
        await asyncio.sleep(0.01)
    assert gw.stats()["frames_dropped_closed"] == 1
    # The message itself was stored: a client resubscribing (with its lastEventId) gets it.
    bob = await connect(gw, "bob")
    _, before = await bob.subscribe("room", history=10)
    history = next(f for f in before if f["type"] == "history")
    assert [m["data"] for m in history["data"]] == [1]
    body = await asyncio.to_thread(http_get, "http://" + gw.url.removeprefix("ws://") + "/metrics")
    assert "rtwidgets_frames_dropped_closed_total 1.0" in body.splitlines()
