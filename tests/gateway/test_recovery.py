"""Catch-up on (re)subscribe: gap-free and duplicate-free history + live, and the
cases where recovery is impossible (evicted gap, other epoch, future id)."""

from __future__ import annotations

import asyncio
from typing import Any

from rtwidgets.gateway import Gateway, MemoryBroker
from rtwidgets.gateway.brokers.base import SnapshotResult


def is_message(f: dict) -> bool:
    return f.get("type") == "message"


async def collect_until_offset(client, channel: str, history: dict, last: int) -> list[int]:
    """Offsets from a history frame followed by live messages, up to ``last``."""
    offsets = [e["offset"] for e in history["data"]]
    while not offsets or offsets[-1] < last:
        msg = await client.take(lambda f: is_message(f) and f["channel"] == channel)
        offsets.append(msg["offset"])
    return offsets


async def test_resume_after_forced_disconnect_loses_and_duplicates_nothing(gateway: Gateway, connect) -> None:
    total = 300
    reader = await connect(gateway, "reader")
    writer = await connect(gateway, "writer")
    ack, _ = await reader.subscribe("feed")
    epoch = ack["epoch"]
    resume_point = asyncio.Event()

    async def produce() -> None:
        for i in range(1, total + 1):
            await writer.publish("feed", {"i": i})
            if i == 50:
                resume_point.set()

    producer = asyncio.create_task(produce())
    await resume_point.wait()
    # Read a few, then drop the connection abruptly (no closing handshake).
    last_id = None
    for _ in range(10):
        last_id = (await reader.take(is_message))["eventId"]
    reader.ws.transport.abort()

    again = await connect(gateway, "reader")
    ack, before = await again.subscribe("feed", lastEventId=last_id, epoch=epoch)
    assert ack["recovered"] is True
    history = next(f for f in before if f["type"] == "history")
    assert history["recovered"] is True and history["epoch"] == epoch
    assert "state" not in history
    offsets = await collect_until_offset(again, "feed", history, total)
    await producer
    assert offsets == list(range(int(last_id) + 1, total + 1))


class GatedSnapshotBroker(MemoryBroker):
    """A MemoryBroker whose snapshot pauses before and after reading, so a test can
    publish while a subscriber is between registration and going live."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.before_read = asyncio.Event()
        self.after_read = asyncio.Event()
        self.waiting_before = asyncio.Event()
        self.waiting_after = asyncio.Event()

    async def snapshot(self, channel: str, **kwargs: Any) -> SnapshotResult:
        self.waiting_before.set()
        await self.before_read.wait()
        result = await super().snapshot(channel, **kwargs)
        self.waiting_after.set()
        await self.after_read.wait()
        return result


async def test_frames_published_during_catch_up_are_held_then_flushed_once(make_gateway, connect) -> None:
    broker = GatedSnapshotBroker()
    gw = await make_gateway(broker=broker)
    writer = await connect(gw, "writer")
    await writer.publish("c", "old-1")
    joiner = await connect(gw, "joiner")
    await joiner.send({"type": "subscribe", "channel": "c", "options": {"history": 50}, "_id": "sub"})
    await broker.waiting_before.wait()
    # Published while the joiner is registered but before the snapshot is read:
    # included in the snapshot AND held -> must be delivered exactly once.
    await writer.publish("c", "during-1")
    broker.before_read.set()
    await broker.waiting_after.wait()
    # Published after the snapshot was read: only held -> must be flushed after history.
    await writer.publish("c", "after-1")
    await writer.publish("c", "after-2")
    broker.after_read.set()
    ack = await joiner.take(lambda f: f.get("id") == "sub")
    assert ack["type"] == "ack" and ack["offset"] == 2
    # Frame order on the wire: history, then the held live frames, then the ack.
    history_index = next(i for i, f in enumerate(joiner.frames) if f["type"] == "history")
    ack_index = joiner.frames.index(ack)
    history = joiner.frames[history_index]
    assert [e["data"] for e in history["data"]] == ["old-1", "during-1"]
    live = [f["data"] for f in joiner.frames[history_index + 1 : ack_index] if is_message(f)]
    assert live == ["after-1", "after-2"]
    await writer.publish("c", "live")
    assert (await joiner.take(is_message))["data"] == "after-1"
    assert (await joiner.take(is_message))["data"] == "after-2"
    assert (await joiner.take(is_message))["data"] == "live"


async def test_gap_older_than_history_is_not_recovered_and_sends_state(make_gateway, connect) -> None:
    gw = await make_gateway(history_size=5)
    a = await connect(gw)
    for i in range(1, 21):
        await a.publish("c", {"i": i}, key=f"k{i % 3}")
    ack, before = await a.subscribe("c", lastEventId="2")
    history = next(f for f in before if f["type"] == "history")
    assert ack["recovered"] is False and history["recovered"] is False
    assert [e["offset"] for e in history["data"]] == [16, 17, 18, 19, 20]  # the retained tail
    assert {k: v["data"]["i"] for k, v in history["state"].items()} == {"k0": 18, "k1": 19, "k2": 20}
    # The oldest resumable id is (oldest retained offset - 1).
    _, before = await a.subscribe("c", lastEventId="15")
    history = next(f for f in before if f["type"] == "history")
    assert history["recovered"] is True and [e["offset"] for e in history["data"]] == [16, 17, 18, 19, 20]


async def test_epoch_mismatch_future_id_and_garbage_are_not_recovered(gateway: Gateway, connect) -> None:
    a = await connect(gateway)
    await a.publish("c", 1)
    await a.publish("c", 2)
    for options in ({"lastEventId": "1", "epoch": "stale"}, {"lastEventId": "99"}, {"lastEventId": "abc"}):
        ack, before = await a.subscribe("c", **options)
        history = next(f for f in before if f["type"] == "history")
        assert ack["recovered"] is False, options
        assert history["recovered"] is False and history["state"] == {}
        assert [e["offset"] for e in history["data"]] == [1, 2]


async def test_new_gateway_means_new_epoch(make_gateway, connect) -> None:
    first = await make_gateway()
    a = await connect(first)
    ack = await a.publish("c", 1)
    epoch = (await a.subscribe("c"))[0]["epoch"]
    second = await make_gateway()
    b = await connect(second)
    ack2, _ = await b.subscribe("c", lastEventId=ack["eventId"], epoch=epoch)
    assert ack2["recovered"] is False and ack2["epoch"] != epoch


async def test_history_option_returns_newest_n(gateway: Gateway, connect) -> None:
    a = await connect(gateway)
    for i in range(10):
        await a.publish("c", i)
    ack, before = await a.subscribe("c", history=3)
    history = next(f for f in before if f["type"] == "history")
    assert [e["data"] for e in history["data"]] == [7, 8, 9]
    assert "recovered" not in history and "recovered" not in ack
    assert history["latestEventId"] == "10" and history["offset"] == 10
    # No history, no lastEventId, no state: no history frame at all.
    _, before = await a.subscribe("d")
    assert not [f for f in before if f["type"] == "history"]
