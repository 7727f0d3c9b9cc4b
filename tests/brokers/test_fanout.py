"""Broker contract: fan-out to the listener (attach/detach, broadcast, order) and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from rtwidgets.gateway.brokers.base import Broker, BrokerUnavailable
from rtwidgets.protocol import decode
from tests._support.broker_listener import Collector
from tests.brokers.frames import barrier, message


async def test_only_attached_channels_are_delivered(broker: Broker, heard: Collector) -> None:
    stored = await broker.publish("x", message("x", "before-attach"))
    await barrier(broker, heard)
    assert heard.of("x") == []  # stored, not delivered
    await broker.attach("x")
    await broker.attach("x")  # idempotent: still delivered once
    live = await broker.publish("x", message("x", "attached"))
    await heard.wait(lambda: len(heard.of("x")) == 1, "the attached frame")
    assert heard.of("x") == [live] and live["offset"] == stored["offset"] + 1
    channel, frame, encoded = next(f for f in heard.frames if f[0] == "x")
    assert channel == "x" and decode(encoded) == frame
    await broker.detach("x")
    await broker.detach("x")  # idempotent
    await broker.detach("never-attached")
    await broker.publish("x", message("x", "after-detach"))
    await broker.broadcast("x", {"type": "message", "channel": "x", "data": "blink", "ephemeral": True})
    await barrier(broker, heard)
    assert [f["data"] for f in heard.of("x")] == ["attached"]


async def test_broadcast_is_delivered_but_not_stored(broker: Broker, heard: Collector) -> None:
    await broker.attach("room")
    frame = {"type": "message", "channel": "room", "data": "blink", "ephemeral": True}
    await broker.broadcast("room", frame)
    await heard.wait(lambda: len(heard.of("room")) == 1, "ephemeral frame")
    assert heard.of("room") == [frame]
    snap = await broker.snapshot("room", last_event_id=None, epoch=None, history=10, want_state=False)
    assert snap.events == [] and snap.offset == 0


async def test_frames_reach_the_listener_in_the_order_their_calls_completed(
    broker: Broker, heard: Collector
) -> None:
    await broker.attach("mix")
    expected = []
    for i in range(10):
        stored = await broker.publish("mix", message("mix", i))
        expected.append(("message", stored["offset"]))
        await broker.broadcast("mix", {"type": "presence_join", "channel": "mix", "member": {"n": i}})
        expected.append(("presence_join", i))
    await heard.wait(lambda: len(heard.of("mix")) == 20, "20 frames")
    got = [
        (f["type"], f["offset"] if f["type"] == "message" else f["member"]["n"]) for f in heard.of("mix")
    ]
    assert got == expected


async def test_close_is_idempotent_and_stops_delivery(broker: Broker, heard: Collector) -> None:
    await broker.attach("c")
    await broker.publish("c", message("c", "open"))
    await heard.wait(lambda: len(heard.of("c")) == 1, "frame before close")
    await broker.close()
    await broker.close()
    delivered = len(heard.frames)
    # After close a broker may refuse (BrokerUnavailable) or still store; it never delivers.
    for call in (
        broker.publish("c", message("c", "closed")),
        broker.broadcast("c", {"type": "message", "channel": "c", "data": "closed"}),
    ):
        with contextlib.suppress(BrokerUnavailable):
            await call
    await asyncio.sleep(0)  # let anything already scheduled run
    assert len(heard.frames) == delivered


async def test_an_unreachable_store_raises_broker_unavailable(unreachable_broker: Broker | None) -> None:
    if unreachable_broker is None:
        pytest.skip("this broker has no store that can be unreachable")
    with pytest.raises(BrokerUnavailable):
        await asyncio.wait_for(unreachable_broker.start(), 10)  # bounded: a hang fails the test
    with pytest.raises(BrokerUnavailable):
        await asyncio.wait_for(unreachable_broker.publish("c", message("c", 1)), 10)
    with pytest.raises(BrokerUnavailable):
        await asyncio.wait_for(
            unreachable_broker.snapshot("c", last_event_id=None, epoch=None, history=1, want_state=False), 10
        )
