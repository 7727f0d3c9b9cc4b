"""Broker contract: snapshots (history, resume from an event id, recovered, state, epochs)."""

from __future__ import annotations

import pytest

from rtwidgets.gateway.brokers.base import Broker
from tests.brokers.frames import MakeBroker, message


async def test_snapshot_without_last_event_id_sends_the_newest_history(broker: Broker) -> None:
    sent = [await broker.publish("c", message("c", i)) for i in range(8)]
    snap = await broker.snapshot("c", last_event_id=None, epoch=None, history=3, want_state=False)
    assert snap.channel == "c" and snap.epoch == sent[0]["epoch"]
    assert snap.events == sent[5:]  # oldest first, whole frames
    assert snap.recovered is None and snap.state is None
    assert snap.offset == 8 and snap.latest_event_id == sent[-1]["id"]
    none = await broker.snapshot("c", last_event_id=None, epoch=None, history=0, want_state=True)
    assert none.events == [] and none.state == {}
    empty = await broker.snapshot("new", last_event_id=None, epoch=None, history=10, want_state=False)
    assert empty.offset == 0 and empty.latest_event_id is None and empty.events == []


async def test_a_new_channel_gets_one_stable_epoch(broker: Broker) -> None:
    s1 = await broker.snapshot("fresh", last_event_id=None, epoch=None, history=5, want_state=True)
    s2 = await broker.snapshot("fresh", last_event_id=None, epoch=None, history=5, want_state=True)
    assert isinstance(s1.epoch, str) and s1.epoch and s1.epoch == s2.epoch
    assert s1.offset == 0 and s1.latest_event_id is None and s1.state == {}
    frame = await broker.publish("fresh", message("fresh", 1))
    assert frame["epoch"] == s1.epoch  # the epoch a subscriber saw is the one messages carry


async def test_resume_after_an_event_id_and_report_loss(make_broker: MakeBroker) -> None:
    broker = await make_broker(history_size=5)
    sent = [await broker.publish("h", message("h", i)) for i in range(4)]
    snap = await broker.snapshot(
        "h", last_event_id=sent[1]["id"], epoch=sent[1]["epoch"], history=0, want_state=False
    )
    assert snap.recovered is True
    assert [e["data"] for e in snap.events] == [2, 3]
    assert snap.offset == 4 and snap.latest_event_id == sent[3]["id"]
    assert snap.state is None
    with_state = await broker.snapshot(
        "h", last_event_id=sent[1]["id"], epoch=None, history=0, want_state=True
    )
    assert with_state.recovered is True and with_state.state == {}

    # up to date: recovered with nothing to send
    snap = await broker.snapshot("h", last_event_id=sent[3]["id"], epoch=None, history=0, want_state=False)
    assert snap.recovered is True and snap.events == []

    # push the old id out of the 5-event history
    sent += [await broker.publish("h", message("h", i)) for i in range(4, 10)]
    snap = await broker.snapshot("h", last_event_id=sent[1]["id"], epoch=None, history=3, want_state=False)
    assert snap.recovered is False
    assert [e["data"] for e in snap.events] == [7, 8, 9]
    assert snap.state == {}  # not recovered: the state always comes along
    snap = await broker.snapshot("h", last_event_id=sent[1]["id"], epoch=None, history=0, want_state=False)
    assert [e["data"] for e in snap.events] == [5, 6, 7, 8, 9]  # history 0: all retained

    # the oldest retained id still resumes
    snap = await broker.snapshot("h", last_event_id=sent[5]["id"], epoch=None, history=0, want_state=False)
    assert snap.recovered is True and [e["data"] for e in snap.events] == [6, 7, 8, 9]

    # wrong epoch: not recoverable even though the id exists
    snap = await broker.snapshot(
        "h", last_event_id=sent[8]["id"], epoch="not-the-epoch", history=2, want_state=False
    )
    assert snap.recovered is False and [e["data"] for e in snap.events] == [8, 9]

    # no id: newest `history` events, recovered is None
    snap = await broker.snapshot("h", last_event_id=None, epoch=None, history=2, want_state=False)
    assert snap.recovered is None and [e["data"] for e in snap.events] == [8, 9]
    snap = await broker.snapshot("h", last_event_id=None, epoch=None, history=0, want_state=False)
    assert snap.events == []


@pytest.mark.parametrize("bad_id", ["nonsense", "x6", "-1", "٣", "", "1-2-3"])
async def test_an_unknown_event_id_is_not_recovered_and_never_an_error(broker: Broker, bad_id: str) -> None:
    sent = [await broker.publish("g", message("g", i), key="k" if i % 2 else None) for i in range(4)]
    snap = await broker.snapshot("g", last_event_id=bad_id, epoch=None, history=1, want_state=False)
    assert snap.recovered is False and snap.events == sent[-1:]
    assert snap.state == {"k": sent[3]}  # the client rebuilds from the keyed state


async def test_an_unrecovered_snapshot_honours_the_history_count(make_broker: MakeBroker) -> None:
    broker = await make_broker(history_size=5)
    sent = [await broker.publish("c", message("c", i)) for i in range(8)]
    snap = await broker.snapshot("c", last_event_id=sent[0]["id"], epoch=None, history=2, want_state=False)
    assert snap.recovered is False and [e["offset"] for e in snap.events] == [7, 8]


async def test_a_negative_history_is_refused(broker: Broker) -> None:
    with pytest.raises(ValueError, match="history"):
        await broker.snapshot("c", last_event_id=None, epoch=None, history=-1, want_state=False)
