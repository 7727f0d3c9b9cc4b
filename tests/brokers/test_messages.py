"""Broker contract: stored messages (server fields, offsets, epochs, msgId dedupe, keyed state)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtwidgets.gateway.brokers.base import Broker, StateFull
from rtwidgets.protocol import decode
from tests._support.broker_listener import Collector
from tests.brokers.frames import MakeBroker, barrier, message


async def test_publish_fills_id_offset_epoch_and_timestamp(broker: Broker) -> None:
    out = await broker.publish("c", message("c", 1))
    assert isinstance(out["id"], str) and out["id"] == out["eventId"]
    assert out["offset"] == 1
    assert isinstance(out["epoch"], str) and out["epoch"]
    assert isinstance(out["timestamp"], int) and out["timestamp"] > 0
    assert (out["type"], out["channel"], out["data"], out["senderId"]) == ("message", "c", 1, "u1")
    second = await broker.publish("c", message("c", 2))
    assert second["offset"] == 2 and second["epoch"] == out["epoch"] and second["id"] != out["id"]
    other = await broker.publish("d", message("d", 1))
    assert other["offset"] == 1  # offsets count per channel


async def test_published_data_fields_and_precision_are_kept(broker: Broker, heard: Collector) -> None:
    await broker.attach("p")
    data = {"big": 2**53, "pi": 3.141592653589793, "text": 'quote " and \\ and ü', "empty": {}, "list": []}
    frame = await broker.publish("p", message("p", data, timestamp=123))
    assert frame["data"] == data and frame["timestamp"] == 123 and frame["channel"] == "p"
    await heard.wait(lambda: len(heard.of("p")) == 1, "frame")
    assert heard.of("p")[0] == frame
    # client-supplied server fields are overwritten, not trusted
    forged = await broker.publish("p", message("p", 1, id="forged", eventId="forged", offset=999, epoch="x"))
    assert forged["id"] == forged["eventId"] != "forged"
    assert forged["offset"] == 2 and forged["epoch"] == frame["epoch"]


async def test_concurrent_publishes_reach_the_listener_once_each_in_offset_order(
    broker: Broker, heard: Collector
) -> None:
    await broker.attach("c")
    sent = await asyncio.gather(*(broker.publish("c", message("c", i)) for i in range(30)))
    assert sorted(f["offset"] for f in sent) == list(range(1, 31))
    assert len({f["id"] for f in sent}) == 30 and len({f["epoch"] for f in sent}) == 1
    await heard.wait(lambda: len(heard.of("c")) == 30, "30 frames")
    await barrier(broker, heard)
    got = heard.of("c")
    assert [f["offset"] for f in got] == list(range(1, 31))  # each once, in offset order
    assert sorted(got, key=lambda f: f["offset"]) == sorted(sent, key=lambda f: f["offset"])
    for _, frame, encoded in heard.frames:  # the listener gets the frame already encoded
        assert decode(encoded) == frame


async def test_msg_id_dedupe_returns_the_earlier_frame_and_stores_nothing(
    broker: Broker, heard: Collector
) -> None:
    await broker.attach("d")
    first = await broker.publish("d", message("d", "x"), msg_id="m-1")
    again = await broker.publish("d", message("d", "x-retry"), msg_id="m-1")
    assert again == {**first, "duplicate": True}
    assert "duplicate" not in first
    other = await broker.publish("d", message("d", "y"), msg_id="m-2")
    assert "duplicate" not in other and other["offset"] == first["offset"] + 1
    await barrier(broker, heard)
    assert [f["data"] for f in heard.of("d")] == ["x", "y"]  # the duplicate is not sent again
    snap = await broker.snapshot("d", last_event_id=None, epoch=None, history=10, want_state=False)
    assert [e["data"] for e in snap.events] == ["x", "y"] and snap.offset == 2


async def test_msg_id_window_is_the_history_size(make_broker: MakeBroker) -> None:
    broker = await make_broker(history_size=3)
    for i in range(3):
        await broker.publish("w", message("w", i), msg_id=f"m{i}")
    assert (await broker.publish("w", message("w", "retry"), msg_id="m0"))["duplicate"] is True
    await broker.publish("w", message("w", 3), msg_id="m3")  # m0 leaves the window
    again = await broker.publish("w", message("w", "late"), msg_id="m0")
    assert "duplicate" not in again and again["offset"] == 5
    for i in range(4, 10):
        await broker.publish("w", message("w", i), msg_id=f"m{i}")
    late = await broker.publish("w", message("w", "later"), msg_id="m4")
    assert "duplicate" not in late and late["offset"] == 12


async def test_keyed_state_set_replace_delete_and_bound(make_broker: MakeBroker) -> None:
    broker = await make_broker(state_max_keys=2)

    async def state() -> dict[str, Any]:
        snap = await broker.snapshot("s", last_event_id=None, epoch=None, history=0, want_state=True)
        assert snap.state is not None
        return snap.state

    await broker.publish("s", message("s", {"v": 1}), key="k1")
    k1b = await broker.publish("s", message("s", {"v": 2}), key="k1")
    k2 = await broker.publish("s", message("s", {"v": 3}), key="k2")
    assert await state() == {"k1": k1b, "k2": k2}  # the latest frame per key
    with pytest.raises(StateFull) as refused:
        await broker.publish("s", message("s", {"v": 4}), key="k3")
    assert isinstance(refused.value, ValueError)  # the gateway answers it with state_full
    assert "'s'" in str(refused.value) and "2" in str(refused.value)  # names channel and bound
    # the refused publish stored nothing and took no offset
    snap = await broker.snapshot("s", last_event_id=None, epoch=None, history=10, want_state=False)
    assert snap.offset == 3 and [e["data"]["v"] for e in snap.events] == [1, 2, 3]
    await broker.publish("s", message("s", {"v": 5}), key="k2")  # replacing is fine at the bound
    await broker.publish("s", message("s", None), key="k1")  # data None deletes
    await broker.publish("s", message("s", None), key="zzz")  # deleting a missing key is fine
    k3 = await broker.publish("s", message("s", {"v": 6}), key="k3")
    current = await state()
    assert set(current) == {"k2", "k3"} and current["k3"] == k3 and current["k2"]["data"] == {"v": 5}
    snap = await broker.snapshot("s", last_event_id=None, epoch=None, history=0, want_state=False)
    assert snap.offset == 7  # deletes are stored messages too
