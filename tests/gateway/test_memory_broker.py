"""MemoryBroker unit tests (no sockets): what is particular to it (offsets as event ids, the
resume boundary, its epoch/clock factories, ``dedupe_window``, argument checks).

The behaviour every broker shares (fan-out, history, snapshots, keyed state, msgId dedupe,
presence, close) is the contract suite in ``tests/brokers/``, which runs on this broker too.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtwidgets.gateway.brokers.memory import MemoryBroker, StateFull


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any], bytes]] = []

    def __call__(self, channel: str, frame: dict[str, Any], encoded: bytes) -> None:
        self.frames.append((channel, frame, encoded))


def make(history_size: int = 5, **kwargs: Any) -> tuple[MemoryBroker, Recorder]:
    epochs = iter(f"epoch{i}" for i in range(1000))
    broker = MemoryBroker(history_size, clock=lambda: 1234.5, new_epoch=lambda: next(epochs), **kwargs)
    rec = Recorder()
    broker.set_listener(rec)
    return broker, rec


def msg(data: Any) -> dict[str, Any]:
    return {"type": "message", "channel": "c", "data": data}


async def test_ids_are_offsets_and_epochs_and_timestamps_come_from_the_factories() -> None:
    # Delivery to attached channels only: tests/brokers/test_fanout.py (every broker).
    broker, _ = make()
    await broker.start()
    out = await broker.publish("c", msg(1))
    assert out["id"] == out["eventId"] == "1" and out["offset"] == 1
    assert out["epoch"] == "epoch0" and out["timestamp"] == 1234500
    other = await broker.publish("d", msg(1))
    assert other["offset"] == 1 and other["epoch"] == "epoch1"  # per-channel epoch and offsets


@pytest.mark.parametrize(
    ("last_event_id", "epoch", "recovered", "offsets"),
    [
        ("8", None, True, []),  # up to date
        ("6", "epoch0", True, [7, 8]),
        ("3", None, True, [4, 5, 6, 7, 8]),  # oldest retained is 4: 3 is the oldest resumable id
        ("2", None, False, [4, 5, 6, 7, 8]),  # 3 was evicted
        ("9", None, False, [4, 5, 6, 7, 8]),  # from the future
        ("6", "other", False, [4, 5, 6, 7, 8]),  # another epoch
        ("x6", None, False, [4, 5, 6, 7, 8]),  # not an offset
        ("-1", None, False, [4, 5, 6, 7, 8]),
        ("٣", None, False, [4, 5, 6, 7, 8]),  # a non-ASCII digit is not an offset
    ],
)
async def test_resume_rules(
    last_event_id: str, epoch: str | None, recovered: bool, offsets: list[int]
) -> None:
    broker, _ = make(history_size=5)
    for i in range(8):
        await broker.publish("c", msg(i), key="k" if i % 2 else None)
    snap = await broker.snapshot("c", last_event_id=last_event_id, epoch=epoch, history=0, want_state=False)
    assert snap.recovered is recovered
    assert [e["offset"] for e in snap.events] == offsets
    if recovered:
        assert snap.state is None
    else:
        assert snap.state is not None and snap.state["k"]["data"] == 7


async def test_empty_channel_resume_from_zero_is_recovered() -> None:
    broker, _ = make()
    snap = await broker.snapshot("c", last_event_id="0", epoch=None, history=0, want_state=False)
    assert snap.recovered is True and snap.events == []


async def test_state_full_names_the_bound() -> None:
    # Set, replace, delete and the bound itself: tests/brokers/test_messages.py (every broker).
    broker, _ = make(state_max_keys=2)
    await broker.publish("c", msg("a1"), key="a")
    await broker.publish("c", msg("b1"), key="b")
    with pytest.raises(StateFull, match="2 state keys"):
        await broker.publish("c", msg("c1"), key="c")
    assert issubclass(StateFull, ValueError)


async def test_msg_id_dedupe_is_bounded_by_window() -> None:
    broker, rec = make(history_size=10, dedupe_window=2)
    await broker.attach("c")
    first = await broker.publish("c", msg(1), msg_id="m1")
    dup = await broker.publish("c", msg("ignored"), msg_id="m1")
    assert dup == {**first, "duplicate": True}
    assert len(rec.frames) == 1 and "duplicate" not in first
    await broker.publish("c", msg(2), msg_id="m2")
    await broker.publish("c", msg(3), msg_id="m3")  # m1 falls out of the window
    again = await broker.publish("c", msg(1), msg_id="m1")
    assert "duplicate" not in again and again["offset"] == 4


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        MemoryBroker(0)
    with pytest.raises(ValueError):
        MemoryBroker(5, state_max_keys=0)
    with pytest.raises(ValueError):
        MemoryBroker(5, dedupe_window=0)


@settings(max_examples=40, deadline=None)
@given(
    history_size=st.integers(1, 8),
    count=st.integers(0, 20),
    last=st.integers(-2, 25),
)
async def test_resume_property(history_size: int, count: int, last: int) -> None:
    """recovered iff the id is within [oldest-1, offset]; then events are exactly the ones after it."""
    broker = MemoryBroker(history_size)
    for i in range(count):
        await broker.publish("c", msg(i))
    snap = await broker.snapshot("c", last_event_id=str(last), epoch=None, history=0, want_state=False)
    oldest = max(1, count - history_size + 1)
    expected = last >= 0 and oldest - 1 <= last <= count
    assert snap.recovered is expected
    if expected:
        assert [e["offset"] for e in snap.events] == list(range(last + 1, count + 1))
    else:
        assert [e["offset"] for e in snap.events] == list(range(oldest, count + 1))
