"""Integration tests: the asyncio RealtimeConnection against a real Gateway on 127.0.0.1.

Every wait is on a condition with a generous timeout; nothing depends on machine speed.
Forced disconnects abort the client's TCP transport; an ``auth`` callback that waits on an
``asyncio.Event`` holds a reconnect back deterministically while others keep publishing.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rtwidgets.auth import issue_token
from rtwidgets.client import (
    AuthenticationError,
    ChannelHandle,
    ConnectionClosedError,
    ConnectionFailedError,
    QueueFullError,
    RealtimeConnection,
    RealtimeError,
    ServerError,
)
from rtwidgets.core.channel import ChannelState, Reset
from rtwidgets.core.connection import ConnectionState, HeartbeatConfig, ReconnectConfig, RttMeasured
from rtwidgets.core.presence import MemberJoined, MemberLeft, MemberUpdated
from rtwidgets.gateway import Gateway
from tests._support.clients import Gate, MakeClient
from tests._support.waiting import eventually

T = 10.0  # generous timeout for every condition
# eventually(..., interval=0) only yields to the loop between checks: a task's state is awaited
# step by step, with no I/O wait slipped in between steps the test orders on purpose.


def data_of(ch: ChannelHandle) -> list[Any]:
    return [m["data"] for m in ch.messages]


async def drop(conn: RealtimeConnection) -> None:
    """Kill the client's TCP connection (no close frame) and wait until it notices."""
    assert conn.simulate_drop()
    await conn.wait_for_state(ConnectionState.RECONNECTING, ConnectionState.CONNECTING, timeout=T)


# ----------------------------------------------------------------------------- basics


async def test_publish_and_receive_across_connections(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    b = await make_client(gateway, "bob")
    assert (a.state, a.user_id, b.user_id) == (ConnectionState.CONNECTED, "alice", "bob")
    assert a.client_id and a.client_id != b.client_id
    seen: list[dict[str, Any]] = []
    ch_a = await a.subscribe("chat:1")
    ch_b = await b.subscribe("chat:1", on_message=seen.append)
    assert ch_b.status is ChannelState.SUBSCRIBED
    acks = [await ch_a.publish({"n": i}) for i in range(10)]
    assert all(ack is not None and ack["eventId"] and ack["offset"] == i + 1 for i, ack in enumerate(acks))
    await ch_b.wait_for(lambda ch: len(ch.messages) == 10, T)
    assert data_of(ch_b) == [{"n": i} for i in range(10)]
    assert [m["offset"] for m in seen] == list(range(1, 11))
    assert {m["senderId"] for m in seen} == {"alice"}
    assert [m["seq"] for m in seen] == list(range(1, 11))  # our FIFO seq, relayed
    assert ch_b.last_event_id == acks[-1]["eventId"]


async def test_ephemeral_and_history_and_keyed_state(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    ch_a = await a.subscribe("doc")
    for i in range(5):
        await ch_a.publish(i, key=f"k{i % 2}")
    ephemeral_ack = await ch_a.publish("typing", ephemeral=True)
    assert ephemeral_ack is not None and ephemeral_ack["ephemeral"] is True and "offset" not in ephemeral_ack
    b = await make_client(gateway, "bob")
    ch_b = await b.subscribe("doc", history=3, state=True)
    # The newest three stored messages were replayed; the ephemeral one is not stored.
    assert data_of(ch_b) == [2, 3, 4]
    assert ch_b.state is not None and {k: v["data"] for k, v in ch_b.state.items()} == {"k0": 4, "k1": 3}
    await ch_a.publish(None, key="k0")  # data None deletes the key
    await ch_b.wait_for(lambda ch: ch.state is not None and "k0" not in ch.state, T)


async def test_presence_across_two_users(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    b = await make_client(gateway, "bob")
    b2 = await make_client(gateway, "bob")  # a second tab of bob
    events: list[Any] = []
    ch_a = await a.subscribe("room", presence=True, presence_data={"color": "red"}, on_presence=events.append)
    ch_b = await b.subscribe("room", presence=True, presence_data={"color": "blue"})
    ch_b2 = await b2.subscribe("room", presence=True)
    await ch_a.wait_for(lambda ch: len(ch.members) == 3, T)
    assert ch_a.users == ["alice", "bob"]
    assert {m["clientId"] for m in ch_a.members} == {a.client_id, b.client_id, b2.client_id}
    await ch_b.update_presence({"color": "green"})
    await ch_a.wait_for(
        lambda ch: any(m["data"] == {"color": "green"} for m in ch.members if m["clientId"] == b.client_id), T
    )
    assert any(isinstance(e, MemberUpdated) and e.member["clientId"] == b.client_id for e in events)
    assert any(isinstance(e, MemberJoined) and e.member["clientId"] == b2.client_id for e in events)
    await ch_b2.unsubscribe()
    assert ch_b2.status is ChannelState.UNSUBSCRIBED
    await ch_a.wait_for(lambda ch: len(ch.members) == 2, T)
    assert ch_a.users == ["alice", "bob"]  # bob is still here through his first tab
    await b.close()
    await ch_a.wait_for(lambda ch: ch.users == ["alice"], T)
    assert any(isinstance(e, MemberLeft) and e.member["clientId"] == b.client_id for e in events)
    with pytest.raises(ValueError, match="presence is not enabled"):
        await (await a.subscribe("plain")).update_presence({"x": 1})


async def test_sync_returns_delta(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    ch = await a.subscribe("s")
    await ch.publish(1)
    await ch.wait_for(lambda c: len(c.messages) == 1, T)
    response = await ch.sync()
    assert response["type"] == "sync_response" and response["syncType"] == "delta"
    assert response["events"] == []
    assert data_of(ch) == [1]


# ----------------------------------------------------------------------------- recovery


async def test_forced_disconnect_while_other_publishes_is_exactly_once(
    gateway: Gateway, make_client: MakeClient
) -> None:
    a = await make_client(gateway, "alice")
    b = await make_client(gateway, "bob")
    ch_a = await a.subscribe("feed")
    ch_b = await b.subscribe("feed")
    total = 60

    async def publisher() -> None:
        for i in range(total):
            await ch_b.publish(i)

    task = asyncio.create_task(publisher())
    await ch_a.wait_for(lambda ch: len(ch.messages) >= 10, T)
    await drop(a)
    await a.wait_for_state(ConnectionState.CONNECTED, timeout=T)
    await task
    await ch_a.wait_for(lambda ch: len(ch.messages) == total, T)
    assert data_of(ch_a) == list(range(total))
    assert [m["offset"] for m in ch_a.messages] == list(range(1, total + 1))
    assert a.stats().reconnects == 1


async def test_offline_gap_within_history_is_replayed_once(gateway: Gateway, make_client: MakeClient) -> None:
    gate = Gate(gateway.token("alice"))
    a = await make_client(gateway, auth=gate)
    b = await make_client(gateway, "bob")
    received: list[Any] = []
    ch_a = await a.subscribe("feed", on_message=lambda f: received.append(f["data"]))
    ch_b = await b.subscribe("feed")
    for i in range(5):
        await ch_b.publish(i)
    await ch_a.wait_for(lambda ch: len(ch.messages) == 5, T)
    gate.open.clear()  # hold the reconnect
    await drop(a)
    for i in range(5, 25):
        await ch_b.publish(i)
    gate.open.set()
    await a.wait_for_state(ConnectionState.CONNECTED, timeout=T)
    await ch_b.publish(25)
    await ch_a.wait_for(lambda ch: len(ch.messages) == 26, T)
    assert received == list(range(26))
    assert ch_a.stats()["resets"] == 0


async def test_publish_issued_offline_is_delivered_once(gateway: Gateway, make_client: MakeClient) -> None:
    gate = Gate(gateway.token("alice"))
    a = await make_client(gateway, auth=gate)
    b = await make_client(gateway, "bob")
    ch_a = await a.subscribe("q")
    ch_b = await b.subscribe("q")
    gate.open.clear()
    await drop(a)
    pending = asyncio.create_task(ch_a.publish("while offline"))
    await eventually(lambda: a.stats().queue_size == 1, "the offline publish to be queued", T, interval=0)
    gate.open.set()
    ack = await asyncio.wait_for(pending, T)
    assert ack is not None and ack["offset"] == 1
    await ch_b.wait_for(lambda ch: len(ch.messages) == 1, T)
    await ch_b.publish("after")
    await ch_b.wait_for(lambda ch: len(ch.messages) == 2, T)
    assert data_of(ch_b) == ["while offline", "after"]


async def test_publish_whose_ack_was_lost_is_retried_exactly_once(
    gateway: Gateway, make_client: MakeClient
) -> None:
    a = await make_client(gateway, "alice")
    b = await make_client(gateway, "bob")
    ch_a = await a.subscribe("r")
    ch_b = await b.subscribe("r")
    assert a._ws is not None
    a._ws.transport.pause_reading()  # the gateway stores it, but alice never reads the ack
    pending = asyncio.create_task(ch_a.publish("once"))
    await ch_b.wait_for(lambda ch: len(ch.messages) == 1, T)
    await drop(a)
    ack = await asyncio.wait_for(pending, T)
    assert ack is not None and ack.get("duplicate") is True  # resent with the same msgId, deduped
    await ch_b.publish("next")
    await ch_b.wait_for(lambda ch: len(ch.messages) == 2, T)
    assert data_of(ch_b) == ["once", "next"]
    await ch_a.wait_for(lambda ch: data_of(ch) == ["once", "next"], T)


async def test_gap_older_than_history_resets_with_state(
    make_gateway: Callable[..., Awaitable[Gateway]], make_client: MakeClient
) -> None:
    gw = await make_gateway(history_size=5)
    gate = Gate(gw.token("alice"))
    a = await make_client(gw, auth=gate)
    b = await make_client(gw, "bob")
    resets: list[Reset] = []
    ch_a = await a.subscribe("board", state=True, on_reset=resets.append)
    ch_b = await b.subscribe("board")
    await ch_b.publish("first", key="title")
    await ch_a.wait_for(lambda ch: len(ch.messages) == 1, T)
    gate.open.clear()
    await drop(a)
    for i in range(12):
        await ch_b.publish(i, key=f"cell{i % 3}")
    gate.open.set()
    await ch_a.wait_for(lambda ch: len(resets) == 1, T)
    (reset,) = resets
    assert reset.state is not None
    assert {k: v["data"] for k, v in reset.state.items()} == {
        "title": "first",
        "cell0": 9,
        "cell1": 10,
        "cell2": 11,
    }
    assert [e["data"] for e in reset.events] == [7, 8, 9, 10, 11]  # the retained history
    assert data_of(ch_a) == [7, 8, 9, 10, 11]  # messages rebuilt from the reset
    assert ch_a.state is not None and ch_a.state["cell2"]["data"] == 11
    await ch_b.publish("live")
    await ch_a.wait_for(lambda ch: data_of(ch)[-1:] == ["live"], T)
    assert data_of(ch_a) == [7, 8, 9, 10, 11, "live"]


# ----------------------------------------------------------------------------- failures


async def test_bad_token_raises_and_does_not_reconnect(gateway: Gateway, make_client: MakeClient) -> None:
    errors: list[RealtimeError] = []
    conn = await make_client(gateway, token="not-a-token", connect=False)
    conn.on_error(errors.append)
    with pytest.raises(AuthenticationError, match="authentication failed"):
        await conn.connect(timeout=T)
    assert conn.state is ConnectionState.DISCONNECTED
    stats = conn.stats()
    assert stats.next_retry_at is None and stats.last_close_code == 4001
    assert [e.code for e in errors] == ["auth_failed"]
    assert "not-a-token" not in repr(conn) + str(errors[0])
    with pytest.raises(ConnectionClosedError):
        await conn.subscribe("x")


async def test_forbidden_subscribe_and_publish(gateway: Gateway, make_client: MakeClient) -> None:
    conn = await make_client(gateway, token=gateway.token("eve", ["public:*"], publish=[]))
    with pytest.raises(ServerError) as exc_info:
        await conn.subscribe("secret")
    assert exc_info.value.code == "forbidden"
    assert "secret" not in conn.channels
    ch = await conn.subscribe("public:news")
    with pytest.raises(ServerError) as exc_info:
        await ch.publish("hi")
    assert exc_info.value.code == "forbidden"
    assert conn.state is ConnectionState.CONNECTED  # errors do not break the connection


async def test_queue_overflow_raises(gateway: Gateway, make_client: MakeClient) -> None:
    gate = Gate(gateway.token("alice"))
    conn = await make_client(gateway, auth=gate, queue_limit=2)
    errors: list[RealtimeError] = []
    conn.on_error(errors.append)
    ch = await conn.subscribe("busy")
    gate.open.clear()
    await drop(conn)
    queued = [asyncio.create_task(ch.publish(i)) for i in range(2)]
    await eventually(lambda: conn.stats().queue_size == 2, "the queue to fill", T, interval=0)
    with pytest.raises(QueueFullError):
        await ch.publish("one too many")
    assert any(isinstance(e, QueueFullError) for e in errors)
    assert conn.stats().queue_overflows == 1
    gate.open.set()
    acks = await asyncio.wait_for(asyncio.gather(*queued), T)
    assert [a["offset"] for a in acks if a is not None] == [1, 2]


async def test_unacked_frame_without_a_socket_is_reported_not_dropped(
    gateway: Gateway, make_client: MakeClient
) -> None:
    """If the I/O layer has no writer while the core still counts as connected (out of step), an
    ``ack=False`` publish is not reported as sent and silently dropped: it stays in the core and
    fails with ``connection_closed`` when the socket's end is reported."""
    conn = await make_client(gateway)
    ch = await conn.subscribe("c")
    conn._outbox = None  # the writer is gone; the reader has not reported the close yet
    pending = asyncio.create_task(ch.publish("lost?", ephemeral=True, ack=False))
    await eventually(lambda: conn._core._out != [], "the frame to be transmitted by the core", T, interval=0)
    assert not pending.done()
    assert conn.simulate_drop()
    with pytest.raises(ConnectionClosedError) as info:
        await asyncio.wait_for(pending, T)
    assert info.value.code == "connection_closed"
    await conn.wait_for_state(ConnectionState.CONNECTED, timeout=T)
    assert await ch.publish("after", ephemeral=True, ack=False) is None
    ack = await ch.publish("stored")
    assert ack is not None and ack["offset"] == 1


async def test_close_fails_queued_and_leaves_no_tasks(gateway: Gateway, make_client: MakeClient) -> None:
    gate = Gate(gateway.token("alice"))
    conn = await make_client(gateway, auth=gate)
    ch = await conn.subscribe("c")
    gate.open.clear()
    await drop(conn)
    pending = asyncio.create_task(ch.publish(1))
    await eventually(lambda: conn.stats().queue_size == 1, "the publish to be queued", T, interval=0)
    await conn.close()
    with pytest.raises(ConnectionClosedError):
        await pending
    assert conn.state is ConnectionState.DISCONNECTED
    assert ch.status is ChannelState.UNSUBSCRIBED
    assert not conn._tasks and conn._timer is None
    gate.open.set()
    ours = [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").startswith(("RealtimeConnection.", "ChannelHandle."))
    ]
    assert ours == []


async def test_heartbeat_measures_rtt_and_events_are_observable(
    gateway: Gateway, make_client: MakeClient
) -> None:
    events: list[Any] = []
    measured = asyncio.Event()
    conn = await make_client(gateway, heartbeat=HeartbeatConfig(interval=0.05, timeout=5.0), connect=False)
    conn.on_event(events.append)
    conn.on_event(lambda ev: measured.set() if isinstance(ev, RttMeasured) else None)
    states: list[tuple[ConnectionState, ConnectionState]] = []
    conn.on_state_change(lambda cur, prev, reason: states.append((prev, cur)))
    await conn.connect(timeout=T)
    await asyncio.wait_for(measured.wait(), T)
    rtt = conn.stats().rtt
    assert rtt is not None and rtt >= 0
    assert states[:2] == [
        (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING),
        (ConnectionState.CONNECTING, ConnectionState.CONNECTED),
    ]
    assert any(type(e).__name__ == "Connected" for e in events)


def _closed_port() -> int:
    """A port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_gateway_gives_up_after_max_attempts() -> None:
    states: list[ConnectionState] = []
    conn = RealtimeConnection(
        f"ws://127.0.0.1:{_closed_port()}",
        token="unused",
        reconnect=ReconnectConfig(max_attempts=2, base_delay=0.01, max_delay=0.02),
    )
    conn.on_state_change(lambda cur, prev, reason: states.append(cur))
    try:
        with pytest.raises(ConnectionFailedError, match="max reconnection attempts"):
            await conn.connect(timeout=T)
        assert conn.state is ConnectionState.FAILED
        # Initial attempt plus two retries, each going connecting -> reconnecting.
        assert states.count(ConnectionState.CONNECTING) == 3
        assert states[-1] is ConnectionState.FAILED
    finally:
        await conn.close()


async def test_gateway_restart_on_same_port_resets_on_new_epoch(make_client: MakeClient) -> None:
    secret = "restart-test-secret-" + "x" * 32
    gw = Gateway("127.0.0.1", 0, secret=secret)
    await gw.start_async()
    port = gw.port
    resets: list[Reset] = []
    try:
        gate = Gate(gw.token("alice"))
        a = await make_client(gw, auth=gate)
        ch = await a.subscribe("life", on_reset=resets.append)
        await ch.publish("before")
        await ch.wait_for(lambda c: len(c.messages) == 1, T)
        old_epoch = ch.epoch
        # A gateway shutdown closes with 1001 (do not reconnect), so cut the link first and hold
        # the reconnect while the gateway restarts with empty in-memory history.
        gate.open.clear()
        await drop(a)
        await gw.stop_async()
        gw = Gateway("127.0.0.1", port, secret=secret)
        await gw.start_async()
        gate.open.set()
        await a.wait_for_state(ConnectionState.CONNECTED, timeout=T)
        await ch.wait_for(lambda c: len(resets) == 1, T)
        assert resets[0].epoch != old_epoch and ch.epoch == resets[0].epoch
        assert data_of(ch) == []  # the new gateway has no history: the reset is empty
        await ch.publish("after")
        await ch.wait_for(lambda c: data_of(c) == ["after"], T)
    finally:
        await gw.stop_async()


async def test_gateway_restart_1012_reconnects_by_itself(make_client: MakeClient) -> None:
    """A rolling restart (``stop(restart=True)``: 1012) is followed by a reconnect and a resume,
    with no help from the application — unlike a shutdown (1001)."""
    secret = "restart-1012-secret-" + "x" * 32
    gw = Gateway("127.0.0.1", 0, secret=secret)
    await gw.start_async()
    port = gw.port
    resets: list[Reset] = []
    try:
        a = await make_client(gw, auth=Gate(gw.token("alice")))
        ch = await a.subscribe("life", on_reset=resets.append)
        await ch.publish("before")
        await ch.wait_for(lambda c: len(c.messages) == 1, T)
        await gw.stop_async(restart=True)
        await a.wait_for_state(ConnectionState.RECONNECTING, timeout=T)
        assert a.stats().last_close_code == 1012
        gw = Gateway("127.0.0.1", port, secret=secret)  # the replacement (here: same address)
        await gw.start_async()
        await a.wait_for_state(ConnectionState.CONNECTED, timeout=T)
        await ch.wait_for(lambda c: len(resets) == 1, T)  # its memory broker is new: a new epoch
        await ch.publish("after")
        await ch.wait_for(lambda c: data_of(c) == ["after"], T)
    finally:
        await gw.stop_async()


async def test_gateway_shutdown_closes_1001_without_reconnect(
    gateway: Gateway, make_client: MakeClient
) -> None:
    errors: list[RealtimeError] = []
    a = await make_client(gateway, "alice")
    a.on_error(errors.append)
    await gateway.stop_async()
    await a.wait_for_state(ConnectionState.DISCONNECTED, timeout=T)
    assert a.stats().last_close_code == 1001 and a.stats().next_retry_at is None
    assert [e.code for e in errors] == ["closed_by_server"]


async def test_unsubscribe_while_subscribe_in_flight(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    events: list[Any] = []
    a.on_event(events.append)
    sub = asyncio.create_task(a.subscribe("fleeting"))
    await eventually(lambda: "fleeting" in a.channels, "subscribe() to register the channel", T, interval=0)
    [handle] = a.channels["fleeting"].handles.values()
    assert handle.status is ChannelState.SUBSCRIBING  # really in flight: no ack yet
    await handle.unsubscribe()
    with pytest.raises(ConnectionClosedError, match="unsubscribed"):
        await sub  # the subscribe() it answered learns that it was closed
    assert handle.status is ChannelState.UNSUBSCRIBED and "fleeting" not in a.channels
    acked = [e.op.type for e in events if type(e).__name__ == "AckReceived"]
    assert acked == ["subscribe", "unsubscribe"]  # the gateway saw both, in order
    with pytest.raises(ConnectionClosedError, match="not subscribed"):
        await handle.publish("too late")
    again = await a.subscribe("fleeting")  # a fresh subscription works
    assert again is not handle and again.status is ChannelState.SUBSCRIBED


async def test_token_expiry_4002_reconnects_with_fresh_token(
    gateway: Gateway, make_client: MakeClient
) -> None:
    """The gateway closes 4002 when the token expires mid-session; ``auth`` is asked again and
    the publish that triggered the close is resent on the new connection."""
    expires_at = time.time() + 1.5
    tokens = [
        issue_token(gateway.secret, "alice", ttl=None, extra={"exp": expires_at}),
        gateway.token("alice"),
    ]
    calls: list[int] = []

    def auth() -> str:
        calls.append(1)
        return tokens[min(len(calls), 2) - 1]

    a = await make_client(gateway, auth=auth)
    ch = await a.subscribe("t")
    while time.time() <= expires_at + 0.05:  # wall-clock condition: the short token has expired
        await asyncio.sleep(0.05)
    ack = await ch.publish("after expiry")
    assert ack is not None and ack["offset"] == 1
    assert a.stats().last_close_code == 4002 and a.stats().reconnects == 1
    assert len(calls) == 2


async def test_channels_survive_failed_state_and_resume_on_connect(
    gateway: Gateway, make_client: MakeClient
) -> None:
    token = gateway.token("alice")
    provider_down = False
    errors: list[RealtimeError] = []

    def auth() -> str:
        if provider_down:
            raise RuntimeError("identity provider down")
        return token

    a = await make_client(gateway, auth=auth, reconnect=ReconnectConfig(max_attempts=2, base_delay=0.01))
    a.on_error(errors.append)
    b = await make_client(gateway, "bob")
    ch = await a.subscribe("keep")
    ch_b = await b.subscribe("keep")
    await ch_b.publish(1)
    await ch.wait_for(lambda c: data_of(c) == [1], T)
    provider_down = True
    assert a.simulate_drop()
    await a.wait_for_state(ConnectionState.FAILED, timeout=T)
    # The drop, then max_attempts (2) failed retries.
    assert [e.code for e in errors] == ["open_failed", "open_failed", "max_attempts"]
    assert "keep" in a.channels and ch.status is ChannelState.SUBSCRIBING
    await ch_b.publish(2)
    await ch_b.publish(3)
    provider_down = False
    await a.connect(timeout=T)
    await ch.wait_for(lambda c: data_of(c) == [1, 2, 3], T)
    assert ch.status is ChannelState.SUBSCRIBED
