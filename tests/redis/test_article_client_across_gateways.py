"""The design's reference client, connected to gateway 1 and gateway 2, talks across them.

The design is summarised in docs/design.md#scaling-out-with-redis.

Two in-process gateways share one real Redis (``RedisBroker`` with a key prefix unique to
this module). ``tests/conformance/article_client.mjs`` runs its short ``cross`` scenario:
client A on gateway 1, client B on gateway 2. Every frame either client sees from the
other crossed Redis. The scenario runs once per module; each test asserts one behaviour.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from rtwidgets.auth import issue_token
from rtwidgets.gateway import Gateway
from rtwidgets.gateway.brokers.redis import RedisBroker
from tests._support.node import NODE_MARKS, Observed, finished, require_websocket_node, run_article_client
from tests._support.redis_server import RedisServer

SECRET = "cross-gateway-secret-" + secrets.token_hex(16)
CHANNEL = "room:cross"
CHANNEL_2 = "room:cross-reverse"
TIMEOUT = 60.0  # generous bound on the whole scenario, not a timing assertion

pytestmark = [pytest.mark.redis, *NODE_MARKS]


async def _cross_scenario(
    redis_url: str, prefix: str, broker: type[RedisBroker] = RedisBroker
) -> tuple[Observed, str]:
    # Same prefix on both brokers: one shared keyspace, as two gateway processes would have.
    # ``broker``: the Redis broker class (tests/cluster runs this scenario on Redis Cluster).
    gateways = [
        Gateway("127.0.0.1", 0, secret=SECRET, broker=broker(redis_url, key_prefix=prefix)) for _ in range(2)
    ]
    started: list[Gateway] = []
    try:
        for gateway in gateways:
            await gateway.start_async()
            started.append(gateway)
        env = {
            "RTW_SCENARIO": "cross",
            "RTW_URL": f"ws://127.0.0.1:{gateways[0].port}",
            "RTW_URL_B": f"ws://127.0.0.1:{gateways[1].port}",
            "RTW_CHANNEL": CHANNEL,
            "RTW_CHANNEL_2": CHANNEL_2,
            "RTW_TOKEN_A": issue_token(SECRET, "alice", ("room:*",)),
            "RTW_TOKEN_B": issue_token(SECRET, "bob", ("room:*",)),
        }
        return await run_article_client(env, timeout=TIMEOUT)
    finally:
        for gateway in started:
            await gateway.stop_async()


@pytest.fixture(scope="module")
def observed(redis_server: RedisServer) -> Observed:
    require_websocket_node()
    # `prefix` is per test; the scenario runs once per module, so it makes its own.
    prefix = "t" + secrets.token_hex(4)
    return finished(*asyncio.run(_cross_scenario(redis_server.url, prefix)), "cross scenario")


def _ids(observed: Observed) -> tuple[str, str]:
    ids = observed["presence_join"]["clientIds"]
    return ids["A"], ids["B"]


def test_clients_connect_to_different_gateways(observed: Observed) -> None:
    seen = observed["connected"]
    assert seen["urls"]["A"] != seen["urls"]["B"]
    assert seen["states"] == {"A": "connected", "B": "connected"}
    a, b = seen["frames"]["A"], seen["frames"]["B"]
    assert a["type"] == b["type"] == "connected"
    assert a["clientId"] and b["clientId"] and a["clientId"] != b["clientId"]


def test_both_subscribe_with_presence_and_are_acked(observed: Observed) -> None:
    seen = observed["subscribed"]
    assert set(seen["states"].values()) == {"subscribed"}, seen["states"]
    for label in ("A", "B"):
        sent, replies = seen[label]["sent"], seen[label]["replies"]
        assert sent["channel"] == CHANNEL and sent["options"]["presence"] is True
        assert [r["type"] for r in replies] == ["ack"], replies
    assert seen["errors"] == []


def test_each_sees_the_others_presence_join_across_gateways(observed: Observed) -> None:
    a_id, b_id = _ids(observed)
    seen = observed["presence_join"]
    # A subscribed CHANNEL first, so A sees B join live and B gets A in its sync ...
    assert seen["bJoinAtA"]["clientId"] == b_id and seen["bJoinAtA"]["userId"] == "bob"
    assert any(m["clientId"] == a_id for s in seen["syncAtB"] for m in s["members"])
    # ... and B subscribed CHANNEL_2 first, so there B sees A join live.
    assert seen["aJoinAtB"]["clientId"] == a_id and seen["aJoinAtB"]["userId"] == "alice"
    assert any(m["clientId"] == b_id for s in seen["syncAtA"] for m in s["members"])
    assert {m["clientId"] for m in seen["membersAtA"]} == {a_id, b_id}
    assert {m["clientId"] for m in seen["membersAtB"]} == {a_id, b_id}


def test_each_sees_the_others_presence_update_across_gateways(observed: Observed) -> None:
    a_id, b_id = _ids(observed)
    seen = observed["presence_update"]
    assert seen["aUpdateAtB"]["clientId"] == a_id and seen["aUpdateAtB"]["data"] == {"status": "reading"}
    assert seen["bUpdateAtA"]["clientId"] == b_id and seen["bUpdateAtA"]["data"] == {"status": "typing"}
    assert any(m["clientId"] == b_id and m["data"] == {"status": "typing"} for m in seen["membersAtA"])
    assert any(m["clientId"] == a_id and m["data"] == {"status": "reading"} for m in seen["membersAtB"])


def test_publish_from_a_acked_and_received_by_b_with_its_event_id(observed: Observed) -> None:
    seen = observed["a_to_b"]
    assert seen["ack"]["type"] == "ack"
    assert seen["data"] == {"text": "from-A", "n": 1}
    frame = seen["frame"]
    assert frame["type"] == "message" and frame["channel"] == CHANNEL
    assert isinstance(frame["eventId"], str) and frame["eventId"]
    assert frame["eventId"] == seen["ack"]["eventId"]  # the id gateway 1 acked is the one B got
    assert seen["lastEventIdAtB"] == frame["eventId"]  # the design's Channel tracks it


def test_publish_from_b_received_by_a(observed: Observed) -> None:
    seen = observed["b_to_a"]
    assert seen["ack"]["type"] == "ack"
    assert seen["data"] == {"text": "from-B", "n": 2}
    frame = seen["frame"]
    assert frame["type"] == "message" and frame["channel"] == CHANNEL
    assert frame["eventId"] == seen["ack"]["eventId"] == seen["lastEventIdAtA"]
    assert frame["eventId"] != observed["a_to_b"]["frame"]["eventId"]
    # One order on both sides, each message once.
    assert [m["text"] for m in seen["messagesAtA"]] == ["from-A", "from-B"]
    assert [m["text"] for m in seen["messagesAtB"]] == ["from-A", "from-B"]


def test_clean_disconnect_on_gateway_1_is_a_leave_on_gateway_2(observed: Observed) -> None:
    a_id, b_id = _ids(observed)
    seen = observed["presence_leave"]
    assert seen["aLeaveAtB"]["clientId"] == a_id
    assert [m["clientId"] for m in seen["membersAtB"]] == [b_id]
    assert seen["stateA"] == "disconnected"
    assert seen["errors"] == {"A": [], "B": []}
    assert seen["errorFrames"] == {"A": [], "B": []}
