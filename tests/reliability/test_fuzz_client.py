"""Fuzz the client's parser and frame handlers with arbitrary server frames (marker ``fuzz``).

A hostile or buggy gateway must never crash the client: ``protocol.parse_server_frame`` raises
nothing but :class:`ProtocolError`, and the sans-I/O cores (``ConnectionCore.on_frame``,
``ChannelManager.route`` / ``ChannelCore.on_frame``, ``PresenceCore``) accept any decoded
frame without raising, keep their invariants (offsets only move forward within an epoch,
every delivered stored message is new) and keep working for a valid frame afterwards.

Scale with ``RTW_FUZZ_EXAMPLES`` (default 100: 3 x 100 hypothesis frames + 50 x 100 mutated).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtwidgets.core.channel import ChannelManager, ChannelMessage, ChannelOptions, Reset
from rtwidgets.core.connection import ConnectionCore, ConnectionState
from rtwidgets.protocol import SERVER_TYPES, ProtocolError, parse_server_frame
from tests._support.fuzzing import JSON_VALUES, Mutator, server_frames

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("RTW_FUZZ_EXAMPLES", "100"))
MUTATED = 50 * EXAMPLES
CHANNELS = ["c1", "c2"]
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class ClientUnderTest:
    """A connected ConnectionCore plus a ChannelManager with two subscribed channels."""

    def __init__(self) -> None:
        self.core = ConnectionCore()
        self.core.connect(0.0)
        self.core.on_open(0.0)
        self.core.on_frame({"type": "connected", "clientId": "me", "userId": "u"}, 0.0)
        for i in range(3):  # acks/errors in the fuzz input may match these (ids 1..3)
            self.core.send({"type": "publish", "channel": "c1", "data": i}, now=0.0, ack=True)
        self.drain()
        self.channels = ChannelManager()
        for i, name in enumerate(CHANNELS):
            core = self.channels.add(name, ChannelOptions(presence=True, state=i == 0, history=5))
            core.subscribe_frame()
            core.on_subscribe_ack({"type": "ack", "channel": name, "epoch": "e1", "offset": 0})
        self.now = 0.0

    def feed(self, raw: str | bytes) -> bool:
        """Feed one raw frame the way ``RealtimeConnection`` does; only ProtocolError may escape
        parsing. True if the frame parsed and reached the cores, False if it was refused."""
        try:
            frame = parse_server_frame(raw)
        except ProtocolError:
            return False
        self.feed_frame(frame)
        return True

    def feed_frame(self, frame: Any) -> None:
        positions = {c.name: (c.epoch, c.last_offset) for c in self.channels}
        self.now += 0.001
        self.core.on_frame(frame, self.now)
        self.drain()
        if isinstance(frame, dict):
            for ev in self.channels.route(frame):
                if isinstance(ev, Reset):
                    positions[ev.channel] = (ev.epoch, ev.offset)
                elif isinstance(ev, ChannelMessage) and type(ev.frame.get("offset")) is int:
                    # Offsets only move forward within an epoch, event after event. (A hostile
                    # gateway may switch epochs back and forth; each switch restarts the order.)
                    epoch, last = positions[ev.channel]
                    offset, msg_epoch = ev.frame["offset"], ev.frame.get("epoch", epoch)
                    if not isinstance(msg_epoch, str):
                        msg_epoch = epoch
                    assert not (msg_epoch == epoch and last is not None and offset <= last), (ev, last)
                    positions[ev.channel] = (msg_epoch, offset)
        assert self.core.state is ConnectionState.CONNECTED

    def drain(self) -> None:
        self.core.events()
        self.core.data_to_send()

    def still_works(self) -> None:
        """A valid message after the fuzzing is still delivered on a fresh channel."""
        core = self.channels.add("fresh", ChannelOptions())
        core.subscribe_frame()
        core.on_subscribe_ack({"type": "ack", "channel": "fresh", "epoch": "e9", "offset": 0})
        events = self.channels.route(
            {"type": "message", "channel": "fresh", "data": 1, "offset": 1, "epoch": "e9", "eventId": "1"}
        )
        assert [type(e).__name__ for e in events] == ["ChannelMessage"]
        self.core.on_frame({"type": "pong", "t": 1}, self.now)
        assert self.core.state is ConnectionState.CONNECTED


@SETTINGS
@given(raw=st.text(max_size=80) | st.binary(max_size=80) | JSON_VALUES.map(json.dumps))
def test_parse_server_frame_raises_only_protocol_error(raw: str | bytes) -> None:
    try:
        frame = parse_server_frame(raw)
    except ProtocolError as exc:
        assert exc.code.value in ("bad_json", "bad_frame")
        return
    assert isinstance(frame, dict) and isinstance(frame["type"], str)


@SETTINGS
@given(frames=st.lists(server_frames(CHANNELS), min_size=1, max_size=4))
def test_cores_accept_any_decoded_server_frame(frames: list[dict[str, Any]]) -> None:
    client = ClientUnderTest()
    for frame in frames:
        client.feed(json.dumps(frame))
    client.still_works()


@SETTINGS
@given(value=JSON_VALUES)
def test_connection_core_accepts_any_json_value(value: Any) -> None:
    client = ClientUnderTest()
    client.feed_frame(value)
    client.still_works()


def test_mutated_server_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    mutator = Mutator(seed=int(os.environ.get("RTW_FUZZ_SEED", "8")), oversize=100)
    client = ClientUnderTest()
    rng = mutator.rng
    types = sorted(SERVER_TYPES)
    processed = refused = 0
    for i in range(MUTATED):
        frame: dict[str, Any] = {"type": rng.choice(types), "channel": rng.choice([*CHANNELS, "other"])}
        for field in rng.sample(
            [
                "id",
                "data",
                "events",
                "state",
                "recovered",
                "offset",
                "version",
                "epoch",
                "latestEventId",
                "syncType",
                "member",
                "members",
                "code",
                "t",
                "eventId",
            ],
            rng.randrange(0, 6),
        ):
            frame[field] = mutator.value()
        if frame["type"] in ("history", "sync_response") and rng.random() < 0.5:
            frame["data" if frame["type"] == "history" else "events"] = [
                {"type": "message", "channel": frame["channel"], "offset": rng.randrange(-2, 40), "epoch": e}
                for e in rng.choices(["e1", "e2"], k=rng.randrange(0, 5))
            ]
        if frame["type"].startswith("presence_") and rng.random() < 0.5:
            frame["member"] = {"clientId": rng.choice(["a", "b", "", None]), "data": mutator.value()}
        text = json.dumps(frame)
        if rng.random() < 0.2:
            text = text[: rng.randrange(0, len(text))]  # truncated: parse errors must stay ProtocolError
        if client.feed(text):
            processed += 1
        else:
            refused += 1
        if i % 1000 == 999:
            client = ClientUnderTest()  # fresh state now and then, so early states get fuzzed too
    # Both paths were exercised: frames refused by the parser and frames the cores had to digest.
    assert processed > 0 and refused > 0, (processed, refused)
    client.still_works()
