"""Helpers of the broker contract suite: frames, a delivery barrier, the factory's type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rtwidgets.gateway.brokers.base import Broker
from tests._support.broker_listener import Collector

BARRIER = "contract-barrier"

# The ``make_broker`` fixture: ``await make_broker(history_size=..., state_max_keys=...)``.
MakeBroker = Callable[..., Awaitable[Broker]]


def message(channel: str, data: Any, **extra: Any) -> dict[str, Any]:
    """A ``message`` frame as a gateway hands it to ``Broker.publish``."""
    return {"type": "message", "channel": channel, "data": data, "senderId": "u1", **extra}


async def barrier(broker: Broker, heard: Collector) -> None:
    """Return once everything ``broker`` delivers for calls made before this one has arrived.

    A broker delivers a channel's frames in the order its calls completed (the contract under
    test), so a broadcast on a channel of its own, once heard, comes after them. Lets a test
    assert that something was *not* delivered without waiting a fixed time.
    """
    await broker.attach(BARRIER)
    seen = len(heard.of(BARRIER))
    await broker.broadcast(BARRIER, {"type": "marker", "channel": BARRIER})
    await heard.wait(lambda: len(heard.of(BARRIER)) > seen, "the barrier marker")
