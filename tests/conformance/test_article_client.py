"""The design's reference JavaScript client (run in Node 20) against our gateway.

``article_client.mjs`` transcribes the design's ``RealtimeConnection``, ``Channel`` and
``ChannelManager`` faithfully and drives one scenario against an in-process gateway,
printing a JSON line per observation. The scenario runs once per module; each test
asserts one behaviour the design's client relies on (docs/design.md#wire-messages).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtwidgets.auth import issue_token
from tests._support.node import NODE_MARKS, Observed, finished, require_websocket_node, run_article_client

SECRET = "conformance-secret-0123456789abcdef0123456789"
CHANNEL = "room:conformance"
TIMEOUT = 90.0

pytestmark = NODE_MARKS


async def _scenario() -> tuple[Observed, str]:
    from rtwidgets.gateway import Gateway

    gateway = Gateway("127.0.0.1", 0, secret=SECRET)
    await gateway.start_async()
    stopped = False

    async def on_event(name: str, observed: Observed) -> None:
        nonlocal stopped
        if name == "ready_for_shutdown" and not stopped:
            stopped = True
            await gateway.stop_async()

    env = {
        "RTW_URL": f"ws://127.0.0.1:{gateway.port}",
        "RTW_CHANNEL": CHANNEL,
        "RTW_TOKEN_A": issue_token(SECRET, "alice", ("room:*",)),
        "RTW_TOKEN_B": issue_token(SECRET, "bob", ("room:*",)),
        # Signed with another secret: a forged token.
        "RTW_BAD_TOKEN": issue_token("not-the-gateway-secret-0123456789abcdef", "mallory"),
    }
    try:
        return await run_article_client(env, timeout=TIMEOUT, on_event=on_event)
    finally:
        if not stopped:
            await gateway.stop_async()


@pytest.fixture(scope="module")
def observed() -> Observed:
    require_websocket_node()
    return finished(*asyncio.run(_scenario()), "scenario")


def _payload(entry: Any) -> Any:
    # The design's Channel hands live messages to onMessage as `message.data`, but
    # history entries as whatever the history frame's `data` array holds (the design's
    # own gateway stores whole event frames there).
    return entry.get("data") if isinstance(entry, dict) and entry.get("type") == "message" else entry


def test_connect_receives_connected_frame(observed: Observed) -> None:
    seen = observed["connected"]
    assert seen["state"] == "connected"
    assert seen["frame"]["type"] == "connected"
    assert isinstance(seen["frame"]["clientId"], str) and seen["frame"]["clientId"]


def test_subscribe_with_presence_and_history_is_acked(observed: Observed) -> None:
    seen = observed["subscribed"]
    assert seen["state"] == "subscribed", seen
    sent = seen["sent"]
    assert sent["options"] == {"presence": True, "history": 10, "lastEventId": None}
    assert any(ack["id"] == sent["_id"] for ack in seen["acks"])
    assert seen["errors"] == []


def test_publish_with_ack_reaches_the_other_client(observed: Observed) -> None:
    assert observed["publish_ack"] == {"resolved": True}
    seen = observed["message_received"]
    assert seen["data"] == {"text": "hello", "n": 0}
    frame = seen["frame"]
    assert frame["type"] == "message" and frame["channel"] == CHANNEL
    # The design's Channel tracks eventId for resumption.
    assert isinstance(frame["eventId"], str) and frame["eventId"]
    assert seen["lastEventIdAtB"] == frame["eventId"]


def test_presence_join_update_leave_seen_by_the_other_client(observed: Observed) -> None:
    join = observed["presence_join"]
    assert join["channelState"] == "subscribed"
    assert join["member"]["userId"] == "bob"
    # The joiner's own join is broadcast to it too, as in the design's gateway.
    assert [m["userId"] for m in join["joinsAtA"]][:2] == ["alice", "bob"]
    assert {m["userId"] for m in join["membersAtB"]} == {"alice", "bob"}  # from presence_sync
    update = observed["presence_update"]
    assert update["member"]["userId"] == "bob"
    assert update["member"]["data"] == {"status": "typing"}
    assert any(m["userId"] == "bob" and m["data"] == {"status": "typing"} for m in update["membersAtA"])
    leave = observed["presence_leave"]
    assert leave["member"]["userId"] == "alice"
    assert leave["member"]["clientId"] == observed["connected"]["frame"]["clientId"]


def test_heartbeat_ping_gets_pong(observed: Observed) -> None:
    seen = observed["pong"]
    assert seen["pings"] >= 1
    assert seen["pong"]["type"] == "pong"
    assert isinstance(seen["pong"]["t"], (int, float))
    assert seen["state"] == "connected"


def test_bad_token_closes_4001_without_reconnect(observed: Observed) -> None:
    seen = observed["bad_token"]
    assert [c["code"] for c in seen["closes"]] == [4001], seen
    assert "Authentication failed" in seen["errors"]
    assert seen["finalState"] == "disconnected"
    assert seen["authCalls"] == 1 and seen["sockets"] == 1
    assert not seen["reconnectPending"]


def test_resubscribe_with_last_event_id_recovers_missed_messages(observed: Observed) -> None:
    assert observed["presence_leave"]["closeAtA"]["code"] == 1006  # the cut, not a clean close
    seen = observed["resubscribed"]
    assert "reconnecting" in seen["states"]
    assert seen["state"] == "subscribed"
    last_id = observed["last_event_id"]["value"]
    assert isinstance(last_id, str) and last_id
    assert seen["sent"]["options"]["lastEventId"] == last_id == seen["lastEventIdBeforeCut"]
    history = seen["historyFrames"][-1]
    assert history["channel"] == CHANNEL
    texts = [_payload(entry)["text"] for entry in history["data"]]
    assert texts == ["gap-1", "gap-2", "gap-3"]
    assert history.get("recovered") is True  # rtwidgets' addition: the gap was fully covered
    delivered = [_payload(entry)["text"] for entry in seen["deliveredAfterResume"]]
    assert delivered[-3:] == ["gap-1", "gap-2", "gap-3"]
    assert seen["errorsAtA"] == []


def test_gateway_shutdown_closes_1001_and_clients_stay_down(observed: Observed) -> None:
    seen = observed["shutdown"]
    assert seen["closes"]["A"]["code"] == 1001
    assert seen["closes"]["B"]["code"] == 1001
    assert seen["states"] == {"A": "disconnected", "B": "disconnected"}
    assert seen["authCallsLater"] == seen["authCallsAtClose"]


def test_refused_subscribe_is_an_error_frame_the_article_client_only_sees_as_ack_timeout(
    observed: Observed,
) -> None:
    # The gateway refuses with `error {code: forbidden, id}` instead of an `ack`. The
    # design's RealtimeConnection has no `error` handling, so its subscribe promise
    # rejects only when its fixed 5 s ack timer fires. Documented, not bent.
    seen = observed["forbidden_subscribe"]
    sent_id = seen["sent"]["_id"]
    assert [(r["type"], r["code"], r["id"]) for r in seen["replies"]] == [("error", "forbidden", sent_id)]
    assert seen["errors"] == ["Ack timeout"]
    assert seen["state"] == "unsubscribed"
