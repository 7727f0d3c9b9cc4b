"""Every bad input gets the right error code; the sender's connection and every other
client keep working and see nothing of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from rtwidgets.gateway import BrokerUnavailable, Gateway, MemoryBroker

DEEP = "[" * 40 + "]" * 40


def frame(**fields: Any) -> str:
    return json.dumps(fields)


BAD_FRAMES: list[tuple[str, str | bytes, str, Any]] = [
    # (name, raw frame, expected code, expected error id)
    ("not json", "{nope", "bad_json", None),
    ("invalid utf8 is binary", b"\xff\xfe", "bad_frame", None),
    ("binary json", b'{"type":"ping"}', "bad_frame", None),
    ("array", "[1, 2]", "bad_frame", None),
    ("string", '"ping"', "bad_frame", None),
    ("missing type", frame(channel="room", _id=1), "bad_frame", 1),
    ("type not a string", frame(type=5, _id=2), "bad_frame", 2),
    ("unknown type", frame(type="operation", _id=3), "unknown_type", 3),
    ("bad _id", frame(type="ping", _id=[1]), "invalid_field", None),
    ("channel missing", frame(type="subscribe", _id=4), "invalid_field", 4),
    ("channel wildcard", frame(type="subscribe", channel="a*", _id=5), "invalid_field", 5),
    ("channel too long", frame(type="publish", channel="c" * 201, data=1, _id=6), "invalid_field", 6),
    ("options not object", frame(type="subscribe", channel="x", options=[], _id=7), "invalid_field", 7),
    (
        "history negative",
        frame(type="subscribe", channel="x", options={"history": -1}, _id=8),
        "invalid_field",
        8,
    ),
    ("publish without data", frame(type="publish", channel="room", _id=9), "invalid_field", 9),
    ("seq not int", frame(type="publish", channel="room", data=1, seq="1", _id=10), "invalid_field", 10),
    (
        "ephemeral not bool",
        frame(type="publish", channel="room", data=1, ephemeral=1, _id=11),
        "invalid_field",
        11,
    ),
    (
        "presence data not object",
        frame(type="presence_update", channel="room", data=[], _id=12),
        "invalid_field",
        12,
    ),
    ("ping t not number", frame(type="ping", t="now", _id=13), "invalid_field", 13),
    ("pendingOps not strings", frame(type="sync", pendingOps=[1], _id=14), "invalid_field", 14),
    ("too deep", '{"type":"publish","channel":"room","_id":15,"data":' + DEEP + "}", "too_deep", 15),
    ("oversize", frame(type="publish", channel="room", data="x" * 70_000, _id=16), "too_large", 16),
    ("subscribe forbidden", frame(type="subscribe", channel="secret", _id=17), "forbidden", 17),
    ("publish forbidden", frame(type="publish", channel="secret", data=1, _id=18), "forbidden", 18),
    (
        "presence forbidden",
        frame(type="subscribe", channel="nopresence", options={"presence": True}, _id=19),
        "forbidden",
        19,
    ),
    ("publish read-only", frame(type="publish", channel="readonly", data=1, _id=20), "forbidden", 20),
    ("unsubscribe unknown", frame(type="unsubscribe", channel="room2", _id=21), "not_subscribed", 21),
]


@pytest.fixture
async def pair(gateway: Gateway, connect):
    """(offender, observer): both subscribed to ``room``; the offender's token is limited."""
    offender = await connect(
        gateway,
        "mallory",
        channels=["room", "room2", "readonly", "nopresence"],
        publish=["room", "room2"],
        presence=["room"],
    )
    observer = await connect(gateway, "olivia")
    await offender.subscribe("room")
    await observer.subscribe("room")
    return offender, observer


@pytest.mark.parametrize(("name", "raw", "code", "msg_id"), BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
async def test_bad_frame_gets_error_and_nothing_else_happens(
    gateway: Gateway, pair, name: str, raw: str | bytes, code: str, msg_id: Any
) -> None:
    offender, observer = pair
    await offender.send(raw)
    err = await offender.take_type("error")
    assert err["code"] == code, err
    assert isinstance(err["reason"], str) and err["reason"]
    assert err.get("id") == msg_id
    assert not [f for f in offender.inbox if f.get("type") == "ack"]  # never both ack and error
    # The connection still works, and the observer's next frame is the marker, nothing else.
    ack = await offender.publish("room", {"marker": name})
    assert (await observer.take()) == (await offender.take_type("message"))
    assert observer.frames[-1]["offset"] == ack["offset"]
    assert gateway.stats()["errors_by_code"][code] == 1


async def test_rate_limited_publish_is_not_published(make_gateway, connect) -> None:
    gw = await make_gateway(publish_rate=0.001, publish_burst=3)
    a = await connect(gw, "a")
    b = await connect(gw, "b")
    await b.subscribe("r")
    for i in range(3):
        await a.publish("r", i)
    err, _ = await a.request({"type": "publish", "channel": "r", "data": "over"})
    assert err["code"] == "rate_limited" and "retry in" in err["reason"]
    # [ext] when it would be accepted, in ms: about one token's interval (1000 s at 0.001/s).
    assert isinstance(err["retryAfter"], int) and 900_000 <= err["retryAfter"] <= 1_000_000
    # Subscribing and pinging are not rate limited.
    await a.ok({"type": "ping"})
    await a.subscribe("r")
    for expected in range(3):
        assert (await b.take_type("message"))["data"] == expected
    second = await connect(gw, "a")  # the bucket is per connection
    await second.publish("r", "other connection")
    assert (await b.take_type("message"))["data"] == "other connection"


async def test_too_many_channels(make_gateway, connect) -> None:
    gw = await make_gateway(max_channels_per_connection=2)
    a = await connect(gw)
    await a.subscribe("one")
    await a.subscribe("two")
    await a.subscribe("two")  # re-subscribing does not count twice
    err, _ = await a.request({"type": "subscribe", "channel": "three"})
    assert err["code"] == "too_many_channels"
    await a.ok({"type": "unsubscribe", "channel": "one"})
    await a.subscribe("three")


async def test_frame_above_hard_limit_closes_with_1009_others_unaffected(make_gateway, connect) -> None:
    gw = await make_gateway(max_message_bytes=1000, hard_max_bytes=4000)
    a = await connect(gw, "a")
    b = await connect(gw, "b")
    await b.subscribe("c")
    await a.send(frame(type="publish", channel="c", data="x" * 2000))
    assert (await a.take_type("error"))["code"] == "too_large"
    await a.send(frame(type="publish", channel="c", data="x" * 5000))
    code, _ = await a.closed()
    assert code == 1009
    with pytest.raises(ConnectionClosedError):
        await a.ws.send("{}")
    await b.publish("c", "still fine")
    assert (await b.take_type("message"))["data"] == "still fine"


async def test_internal_error_answers_internal_and_connection_survives(
    gateway: Gateway, connect, monkeypatch, caplog
) -> None:
    a = await connect(gateway)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("simulated broker bug")

    monkeypatch.setattr(gateway.broker, "presence_members", broken)
    err, _ = await a.request({"type": "subscribe", "channel": "p", "options": {"presence": True}})
    assert err["code"] == "internal" and err["channel"] == "p"
    assert "simulated broker bug" in caplog.text
    monkeypatch.undo()
    await a.ok({"type": "ping"})
    await a.publish("p", "works")


class FlakyBroker(MemoryBroker):
    """Fails the next ``attach`` / ``snapshot`` / ``publish`` when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[str] = set()

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            self.fail.discard(what)
            raise BrokerUnavailable(f"simulated outage during {what}")

    async def attach(self, channel: str) -> None:
        self._maybe_fail("attach")
        await super().attach(channel)

    async def snapshot(self, channel: str, **kwargs: Any):
        self._maybe_fail("snapshot")
        return await super().snapshot(channel, **kwargs)

    async def publish(self, channel: str, frame: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self._maybe_fail("publish")
        return await super().publish(channel, frame, **kwargs)


async def test_broker_outage_answers_unavailable_and_changes_nothing(make_gateway, connect) -> None:
    broker = FlakyBroker()
    gw = await make_gateway(broker=broker)
    a = await connect(gw, "a")
    for what in ("attach", "snapshot"):
        broker.fail.add(what)
        err, _ = await a.request({"type": "subscribe", "channel": "c", "options": {"presence": True}})
        assert err["code"] == "unavailable" and err["channel"] == "c", what
        assert gw.stats()["subscriptions"] == 0 and gw.stats()["channels"] == 0
    broker.fail.add("publish")
    err, _ = await a.request({"type": "publish", "channel": "c", "data": 1})
    assert err["code"] == "unavailable"
    # After the outage everything works, and the failed publish left no trace.
    _, before = await a.subscribe("c", presence=True, history=10)
    history = next(f for f in before if f["type"] == "history")
    assert history["data"] == [] and history["offset"] == 0
    await a.publish("c", "back")
    assert (await a.take_type("message"))["data"] == "back"
