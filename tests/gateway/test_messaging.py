"""Subscribe / publish / ack, ordering, keyed state, msgId de-duplication, ephemeral, sync."""

from __future__ import annotations

import asyncio

from rtwidgets.gateway import Gateway


def is_message(f: dict) -> bool:
    return f.get("type") == "message"


async def test_connected_frame_describes_session_and_limits(gateway: Gateway, connect) -> None:
    client = await connect(gateway, "alice")
    c = client.connected
    assert c["userId"] == "alice"
    assert isinstance(c["clientId"], str) and len(c["clientId"]) == 32
    assert isinstance(c["serverTime"], int)
    assert c["heartbeat"]["timeout"] == int(gateway.config.heartbeat_timeout * 1000)
    assert c["limits"]["maxMessageBytes"] == gateway.config.max_message_bytes
    assert c["limits"]["publishRate"] == gateway.config.publish_rate
    other = await connect(gateway, "alice")
    assert other.client_id != client.client_id


async def test_ping_pong_echoes_t_and_acks(gateway: Gateway, connect) -> None:
    client = await connect(gateway)
    answer, before = await client.request({"type": "ping", "t": 1234.5})
    assert answer == {"type": "ack", "id": answer["id"]}
    assert before[0]["type"] == "pong" and before[0]["t"] == 1234.5
    assert isinstance(before[0]["serverTime"], int)
    # Without _id: a pong and nothing else (no ack): the frames before the next request's
    # answer are exactly the two pongs, in order.
    await client.send({"type": "ping", "t": 1})
    answer, before = await client.request({"type": "ping", "t": 2})
    assert answer["type"] == "ack"
    assert [(f["type"], f.get("t")) for f in before] == [("pong", 1), ("pong", 2)]


async def test_publish_reaches_every_subscriber_including_sender(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    ack_a, _ = await a.subscribe("room")
    assert ack_a["channel"] == "room" and ack_a["offset"] == 0 and ack_a["latestEventId"] is None
    await b.subscribe("room")
    ack = await b.publish("room", {"text": "hi"}, seq=7)
    assert ack["eventId"] == "1" and ack["offset"] == 1
    for client in (a, b):
        msg = await client.take(is_message)
        assert msg["data"] == {"text": "hi"}
        assert msg["id"] == msg["eventId"] == "1"
        assert msg["senderId"] == "bob" and msg["clientId"] == b.client_id
        assert msg["channel"] == "room" and msg["offset"] == 1 and msg["seq"] == 7
        assert msg["epoch"] == ack_a["epoch"] and isinstance(msg["timestamp"], int)


async def test_several_publishers_every_client_sees_the_same_order(gateway: Gateway, connect) -> None:
    clients = [await connect(gateway, f"user{i}") for i in range(4)]
    for c in clients:
        await c.subscribe("order")

    async def burst(c, n: int) -> None:
        for i in range(n):
            await c.send({"type": "publish", "channel": "order", "data": {"from": c.user_id, "i": i}})

    await asyncio.gather(*(burst(c, 25) for c in clients))
    seen = []
    for c in clients:
        got = []
        while len(got) < 100:
            msg = await c.take(is_message)
            got.append((msg["offset"], msg["data"]["from"], msg["data"]["i"]))
        seen.append(got)
    assert all(s == seen[0] for s in seen)
    assert [o for o, _, _ in seen[0]] == list(range(1, 101))
    # Per-sender FIFO: each sender's messages appear in the order sent.
    for c in clients:
        assert [i for _, u, i in seen[0] if u == c.user_id] == list(range(25))


async def test_publish_without_subscription_is_allowed_and_not_echoed(gateway: Gateway, connect) -> None:
    producer = await connect(gateway, "producer")
    reader = await connect(gateway, "reader")
    await reader.subscribe("feed")
    ack = await producer.publish("feed", 1)
    assert ack["offset"] == 1
    msg = await reader.take(is_message)
    assert msg["data"] == 1
    # The producer is not subscribed: its next frame is the answer to its next request.
    answer, before = await producer.request({"type": "ping"})
    assert answer["type"] == "ack" and [f["type"] for f in before] == ["pong"]


async def test_unsubscribe_stops_delivery_and_twice_is_an_error(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    await a.subscribe("x")
    await b.subscribe("x")
    await a.ok({"type": "unsubscribe", "channel": "x"})
    await b.publish("x", "after")
    await a.subscribe("marker")
    await b.publish("marker", "m")
    msg = await a.take(is_message)
    assert msg["channel"] == "marker" and msg["data"] == "m"  # "after" never arrived
    err, _ = await a.request({"type": "unsubscribe", "channel": "x"})
    assert err["type"] == "error" and err["code"] == "not_subscribed" and err["channel"] == "x"


async def test_keyed_state_and_deletion(gateway: Gateway, connect) -> None:
    a = await connect(gateway)
    await a.publish("doc", {"v": 1}, key="k1")
    await a.publish("doc", {"v": 2}, key="k2")
    await a.publish("doc", {"v": 3}, key="k1")
    await a.publish("doc", None, key="k2")  # data null deletes the key
    _, before = await a.subscribe("doc", state=True)
    history = next(f for f in before if f["type"] == "history")
    assert set(history["state"]) == {"k1"}
    assert history["state"]["k1"]["data"] == {"v": 3} and history["state"]["k1"]["offset"] == 3
    assert history["offset"] == 4 and history["data"] == []


async def test_state_full_is_refused_and_stores_nothing(make_gateway, connect) -> None:
    gw = await make_gateway(state_max_keys=2)
    a = await connect(gw)
    await a.publish("s", 1, key="a")
    await a.publish("s", 2, key="b")
    err, _ = await a.request({"type": "publish", "channel": "s", "data": 3, "key": "c"})
    assert err["type"] == "error" and err["code"] == "state_full"
    # Replacing and deleting existing keys still works; the refused publish took no offset.
    ack = await a.publish("s", 4, key="a")
    assert ack["offset"] == 3
    await a.publish("s", None, key="b")
    await a.publish("s", 5, key="c")


async def test_msg_id_dedupe_returns_original_and_sends_nothing(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    await b.subscribe("d")
    first = await a.publish("d", {"n": 1}, msgId="op-1")
    again = await a.publish("d", {"n": 1}, msgId="op-1")
    assert again["duplicate"] is True and again["eventId"] == first["eventId"]
    assert "duplicate" not in first
    await a.publish("d", {"n": 2}, msgId="op-2")
    msgs = [await b.take(is_message) for _ in range(2)]
    assert [m["msgId"] for m in msgs] == ["op-1", "op-2"]
    assert [m["offset"] for m in msgs] == [1, 2]
    assert gateway.stats()["messages_published"] == 2


async def test_ephemeral_is_delivered_but_not_stored(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    b = await connect(gateway, "bob")
    await b.subscribe("typing")
    ack = await a.publish("typing", {"typing": True}, ephemeral=True)
    assert ack.get("ephemeral") is True and "eventId" not in ack
    msg = await b.take(is_message)
    assert msg["ephemeral"] is True and msg["data"] == {"typing": True}
    assert "offset" not in msg and "eventId" not in msg
    late = await connect(gateway, "carol")
    _, before = await late.subscribe("typing", history=10)
    history = next(f for f in before if f["type"] == "history")
    assert history["data"] == [] and history["offset"] == 0
    err, _ = await a.request(
        {"type": "publish", "channel": "typing", "data": 1, "ephemeral": True, "key": "k"}
    )
    assert err["code"] == "invalid_field"


async def test_sync_delta_snapshot_and_confirmed_ops(gateway: Gateway, connect) -> None:
    a = await connect(gateway)
    first = await a.publish("s", {"n": 1}, msgId="m1", key="x")
    await a.publish("s", {"n": 2}, msgId="m2")
    await a.publish("s", {"n": 3})
    epoch = (await a.subscribe("s"))[0]["epoch"]

    ack, before = await a.request(
        {"type": "sync", "channel": "s", "lastEventId": first["eventId"], "epoch": epoch}
    )
    assert ack["type"] == "ack" and ack["channels"] == ["s"]
    delta = next(f for f in before if f["type"] == "sync_response")
    assert delta["syncType"] == "delta" and delta["channel"] == "s"
    assert [e["data"]["n"] for e in delta["events"]] == [2, 3]
    assert delta["latestEventId"] == "3" and delta["version"] == 3 and delta["epoch"] == epoch

    _, before = await a.request({"type": "sync", "channel": "s", "lastEventId": "1", "epoch": "other-epoch"})
    snap = next(f for f in before if f["type"] == "sync_response")
    assert snap["syncType"] == "snapshot" and set(snap["state"]) == {"x"}
    assert [e["offset"] for e in snap["events"]] == [1, 2, 3]

    # No channel: one response per subscribed channel; pendingOps -> confirmedOps.
    await a.subscribe("t")
    ack, before = await a.request({"type": "sync", "pendingOps": ["m2", "never-sent", "m1"]})
    responses = {f["channel"]: f for f in before if f["type"] == "sync_response"}
    assert set(responses) == {"s", "t"} and sorted(ack["channels"]) == ["s", "t"]
    assert responses["s"]["syncType"] == "snapshot"
    assert responses["s"]["confirmedOps"] == ["m2", "m1"]
    assert responses["t"]["confirmedOps"] == [] and responses["t"]["latestEventId"] is None


async def test_sync_needs_permission(gateway: Gateway, connect) -> None:
    a = await connect(gateway, channels=["public:*"])
    err, before = await a.request({"type": "sync", "channel": "secret"})
    assert err["code"] == "forbidden" and not [f for f in before if f["type"] == "sync_response"]
