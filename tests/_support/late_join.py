"""The late-join scenario: handles added to a live channel while a publisher streams.

Used against the in-memory broker (tests/client) and Redis (tests/redis), where a stored
message's fan-out can trail its storage, so a snapshot can cover a message the live
subscription has not received yet.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from rtwidgets.client import ChannelHandle, RealtimeConnection

from .waiting import eventually


class Recorder:
    """Offsets a handle received; ``initial``: how many it held when ``subscribe()`` returned
    (its history, plus any live message that arrived right after it)."""

    def __init__(self, handle: ChannelHandle) -> None:
        self.handle = handle
        self.offsets: list[int] = [frame["offset"] for frame in handle.messages]
        self.initial = len(self.offsets)
        handle.on_message(self._on_message)

    def _on_message(self, frame: dict[str, Any]) -> None:
        if "offset" in frame:
            self.offsets.append(frame["offset"])


async def late_joins_under_a_stream(
    alice: RealtimeConnection, bob: RealtimeConnection, channel: str, *, total: int, joins: int, seed: int
) -> None:
    """Bob publishes ``total`` messages; alice's first handle is there from the start and
    ``joins`` more handles (random history 0..20) subscribe meanwhile. Every handle must see a
    contiguous run of offsets ending at ``total``, each once: the first from 1, a late one from
    its history's first offset (the newest ``history`` at its snapshot), with no gap between its
    history and the live stream."""
    rng = random.Random(seed)
    first = Recorder(await alice.subscribe(channel))
    writer = await bob.subscribe(channel)
    late: list[tuple[int, Recorder]] = []
    handles: list[ChannelHandle] = []

    async def publish() -> None:
        pending: set[asyncio.Future[Any]] = set()
        for i in range(total):
            pending.add(asyncio.ensure_future(writer.publish(i, msg_id=f"m{i}")))
            if len(pending) >= 8:  # a few in flight: fan-out and snapshots interleave
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)

    async def join() -> None:
        for _ in range(joins):
            await asyncio.sleep(rng.random() * 0.02)
            history = rng.choice([0, 1, 3, 20])
            handle = await alice.subscribe(channel, history=history)
            handles.append(handle)
            late.append((history, Recorder(handle)))

    await asyncio.gather(publish(), join())
    await writer.publish("last", msg_id="last")  # a late handle with history 0 sees at least this
    total += 1
    every = [first] + [rec for _, rec in late]
    await eventually(
        lambda: all(r.offsets and r.offsets[-1] == total for r in every), "every handle at the end"
    )
    assert first.offsets == list(range(1, total + 1))
    for history, rec in late:
        start = rec.offsets[0]
        assert rec.offsets == list(range(start, total + 1)), (history, rec.offsets[:30])
        # Its history is the newest `history` at its snapshot (fewer only if the channel had
        # fewer, and then it starts at offset 1), right before the live messages.
        assert rec.initial >= history or start == 1, (history, rec.offsets[:30])
    for handle in handles:
        await handle.unsubscribe()
    assert channel in alice.channels  # the first handle still holds the subscription
