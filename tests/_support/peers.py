"""Test peers for the fault tests: rtwidgets clients that record everything they receive.

A :class:`Peer` is a real :class:`~rtwidgets.client.RealtimeConnection` subscribed to one
channel. It keeps a timeline of what the application saw: every ``on_message`` frame and every
``on_reset`` (continuity lost, rebuild from a snapshot), and how many times it connected, so
acks can be attributed to the gateway incarnation that produced them. :func:`check_stream`
verifies one peer's timeline against the authoritative stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from rtwidgets.client import ChannelHandle, RealtimeConnection, RealtimeError
from rtwidgets.core.channel import Reset
from rtwidgets.core.connection import ConnectionState, HeartbeatConfig, ReconnectConfig

FAST_RECONNECT = ReconnectConfig(max_attempts=10_000, base_delay=0.05, max_delay=0.5, jitter_factor=0.3)


@dataclass
class Ack:
    data: dict[str, Any]
    offset: int
    event_id: str
    connection: int  # which of the publisher's connections (1 = first) carried the ack
    duplicate: bool


@dataclass
class Peer:
    name: str
    url: str
    token: str
    heartbeat: HeartbeatConfig = field(default_factory=lambda: HeartbeatConfig(interval=1.0, timeout=2.0))
    conn: RealtimeConnection | None = None
    handle: ChannelHandle | None = None
    timeline: list[tuple[str, Any]] = field(default_factory=list)  # ("msg", frame) | ("reset", Reset)
    connections: int = 0
    states: list[ConnectionState] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    refused: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)  # one per connection lost
    errors: list[Exception] = field(default_factory=list)  # errors reported for the channel

    async def start(self, channel: str) -> Peer:
        self.conn = RealtimeConnection(
            self.url, token=self.token, reconnect=FAST_RECONNECT, heartbeat=self.heartbeat, ack_timeout=10.0
        )
        self.conn.on_state_change(self._on_state)
        await self.conn.connect(timeout=20.0)
        self.handle = await self.conn.subscribe(
            channel,
            on_message=lambda f: self.timeline.append(("msg", f)),
            on_reset=lambda r: self.timeline.append(("reset", r)),
        )
        self.handle.on_error(lambda exc: self.errors.append(exc))
        return self

    def _on_state(self, current: ConnectionState, previous: ConnectionState, reason: str | None) -> None:
        self.states.append(current)
        if current is ConnectionState.RECONNECTING and previous is not ConnectionState.RECONNECTING:
            assert self.conn is not None
            self.close_codes.append(self.conn.stats().last_close_code)
        if current is ConnectionState.CONNECTED:
            self.connections += 1

    @property
    def state(self) -> ConnectionState:
        assert self.conn is not None
        return self.conn.state

    @property
    def resets(self) -> list[Reset]:
        return [r for kind, r in self.timeline if kind == "reset"]

    def last_offset(self) -> int | None:
        assert self.handle is not None
        return self.handle.offset

    async def publish_loop(self, pub_id: int, stop: asyncio.Event, pace: float) -> None:
        """Publish ``{"p": pub_id, "n": 1, 2, ...}`` until ``stop``; record acks and refusals."""
        assert self.handle is not None
        n = 0
        while not stop.is_set():
            n += 1
            data = {"p": pub_id, "n": n}
            try:
                ack = await self.handle.publish(data)
            except RealtimeError as exc:
                self.refused.append((data, exc.code))
            else:
                assert ack is not None
                self.acks.append(
                    Ack(data, ack["offset"], ack["eventId"], self.connections, bool(ack.get("duplicate")))
                )
            # Pacing only (keeps the fan-out load modest); nothing waits on it.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), pace)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def segments(peer: Peer) -> list[list[tuple[int, Any, str | None]]]:
    """The peer's view as segments of ``(offset, data, epoch)``: a new segment starts at each reset
    and holds the reset's snapshot events followed by the messages delivered after it."""
    out: list[list[tuple[int, Any, str | None]]] = [[]]
    for kind, item in peer.timeline:
        if kind == "reset":
            out.append([(e["offset"], e["data"], e.get("epoch")) for e in item.events])
        elif isinstance(item.get("offset"), int):
            out[-1].append((item["offset"], item["data"], item.get("epoch")))
    return out


def assert_contiguous(name: str, seg: list[tuple[int, Any, str | None]]) -> None:
    """Offsets strictly consecutive (no gap, no duplicate, in order) within one epoch."""
    offsets = [o for o, _, _ in seg]
    if offsets:
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), (
            f"{name}: offsets not consecutive: {offsets[:20]}...{offsets[-20:]}"
        )
    epochs = {e for _, _, e in seg}
    assert len(epochs) <= 1, f"{name}: several epochs in one segment without a reset: {epochs}"


def check_stream(name: str, seg: list[tuple[int, Any, str | None]], stream: dict[int, Any]) -> None:
    """Every message of ``seg`` is the stream's message at that offset, and ``seg`` reaches the end."""
    assert_contiguous(name, seg)
    for offset, data, _ in seg:
        expected = stream.get(offset)
        assert expected == data, f"{name}: offset {offset} has {data!r}, the stream has {expected!r}"
    if stream and seg:
        assert seg[-1][0] == max(stream), f"{name}: stopped at {seg[-1][0]}, stream ends at {max(stream)}"


@dataclass
class Crowd:
    """Peers on one channel, some of them publishing until ``stop`` is set (see :func:`start_crowd`)."""

    publishers: list[Peer]
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]

    async def finish(self) -> None:
        """Stop publishing and wait for the publish loops to end."""
        self.stop.set()
        await asyncio.gather(*self.tasks)


async def start_crowd(
    peers: list[Peer], url: str, secret: str, channel: str, *, count: int, publishers: int, what: str
) -> Crowd:
    """Add ``count`` peers on ``url`` to ``peers`` (p0, p1, ...; tokens signed with ``secret``),
    subscribe them to ``channel``, start the first ``publishers`` publishing every 20 ms, and
    return once each publisher has 5 acks (``what`` names that moment in a timeout)."""
    from rtwidgets.auth import issue_token

    from .waiting import eventually

    peers.extend(Peer(f"p{i}", url, issue_token(secret, f"p{i}")) for i in range(count))
    await asyncio.gather(*(p.start(channel) for p in peers))
    pubs = peers[:publishers]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.publish_loop(i, stop, pace=0.02)) for i, p in enumerate(pubs)]
    await eventually(lambda: all(len(p.acks) >= 5 for p in pubs), what)
    return Crowd(pubs, stop, tasks)
