"""Several handles on one channel of one RealtimeConnection (one gateway subscription).

Each handle gets what a fresh subscriber would (its own history and keyed state), every
message from its start, and unsubscribing one never affects the others.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtwidgets.core.channel import ChannelState
from rtwidgets.core.connection import ConnectionState
from rtwidgets.gateway import Gateway
from tests._support.clients import Gate, MakeClient
from tests._support.late_join import late_joins_under_a_stream
from tests._support.waiting import eventually


def data_of(handle: Any) -> list[Any]:
    return [m["data"] for m in handle.messages]


def members(gateway: Gateway, user: str) -> list[str]:
    return sorted(c for s in gateway.sessions() if s["userId"] == user for c in s["presence"])


async def test_every_subscribe_gets_its_own_handle(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    h1 = await a.subscribe("room", history=10)
    for i in range(3):
        await h1.publish(i)
    h2 = await a.subscribe("room", history=2)
    assert h2 is not h1 and data_of(h2) == [1, 2] and data_of(h1) == [0, 1, 2]
    assert list(a.channels) == ["room"] and a.channels["room"].stats()["subscribers"] == 2
    assert [s["channels"] for s in gateway.sessions()] == [["room"]]
    await h1.unsubscribe()
    assert h1.status is ChannelState.UNSUBSCRIBED and h2.status is ChannelState.SUBSCRIBED
    await h2.publish(3)
    await eventually(lambda: data_of(h2) == [1, 2, 3], "the survivor receives")
    assert data_of(h1) == [0, 1, 2]  # closed: unchanged
    await h2.unsubscribe()
    assert a.channels == {} and [s["channels"] for s in gateway.sessions()] == [[]]


async def test_keyed_state_is_per_handle(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    plain = await a.subscribe("doc")
    await plain.publish("v1", key="title")
    keyed = await a.subscribe("doc", state=True)
    assert plain.state is None and keyed.state is not None and keyed.state["title"]["data"] == "v1"
    await plain.publish("v2", key="title")
    await eventually(
        lambda: keyed.state is not None and keyed.state["title"]["data"] == "v2", "state follows"
    )


async def test_late_handles_under_a_publish_stream(gateway: Gateway, make_client: MakeClient) -> None:
    alice, bob = await make_client(gateway, "alice"), await make_client(gateway, "bob")
    await late_joins_under_a_stream(alice, bob, "stream", total=400, joins=12, seed=7)


async def test_presence_union_on_the_wire(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    b = await make_client(gateway, "bob")
    watch = await b.subscribe("room", presence=True)
    plain = await a.subscribe("room")
    assert members(gateway, "alice") == []
    p1 = await a.subscribe("room", presence_data={"name": "Alice"})
    p2 = await a.subscribe("room", presence_data={"typing": False})
    await eventually(
        lambda: (
            [m["data"] for m in watch.members if m["userId"] == "alice"]
            == [{"name": "Alice", "typing": False}]
        ),
        "one member with both handles' data",
    )
    with pytest.raises(ValueError, match="conflicts"):
        await a.subscribe("room", presence_data={"name": "Eve"})
    await p2.update_presence({"typing": True})
    await eventually(
        lambda: (
            [m["data"] for m in watch.members if m["userId"] == "alice"]
            == [{"name": "Alice", "typing": True}]
        ),
        "an update merges",
    )
    await p1.unsubscribe()
    await p2.unsubscribe()
    await eventually(lambda: [m["userId"] for m in watch.members] == ["bob"], "alice left presence")
    assert members(gateway, "alice") == [] and plain.status is ChannelState.SUBSCRIBED


async def test_catch_up_waits_for_a_reconnect(gateway: Gateway, make_client: MakeClient) -> None:
    gate = Gate(gateway.token("alice"))
    a = await make_client(gateway, "alice", token=None, auth=gate)
    b = await make_client(gateway, "bob")
    first = await a.subscribe("room")
    writer = await b.subscribe("room")
    await writer.publish(0)
    await eventually(lambda: data_of(first) == [0], "first message")
    gate.open.clear()
    assert a.simulate_drop()
    await a.wait_for_state(ConnectionState.RECONNECTING, ConnectionState.CONNECTING, timeout=10)
    late = asyncio.ensure_future(a.subscribe("room", history=3))
    for i in range(1, 5):
        await writer.publish(i)
    await asyncio.sleep(0.05)
    assert not late.done()  # offline: its catch-up waits for the subscription
    gate.open.set()
    handle = await asyncio.wait_for(late, 10)
    assert data_of(handle) == [2, 3, 4]
    await eventually(lambda: data_of(first) == [0, 1, 2, 3, 4], "the first one resumed")
    await writer.publish(5)
    await eventually(lambda: data_of(handle) == [2, 3, 4, 5] and data_of(first)[-1] == 5, "both live")


async def test_catch_up_lost_with_its_socket_is_sent_again(gateway: Gateway, make_client: MakeClient) -> None:
    a = await make_client(gateway, "alice")
    first = await a.subscribe("room")
    for i in range(5):
        await first.publish(i)
    late = asyncio.ensure_future(a.subscribe("room", history=2))
    await asyncio.sleep(0)  # its catch-up is handed to the writer...
    assert a.simulate_drop()  # ...and the socket dies under it
    handle = await asyncio.wait_for(late, 10)
    assert data_of(handle) == [3, 4]
    await first.publish(5)
    await eventually(lambda: data_of(handle) == [3, 4, 5], "live after the retry")
    assert data_of(first) == [0, 1, 2, 3, 4, 5]


async def test_subscribe_after_the_last_handle_left_starts_afresh(
    gateway: Gateway, make_client: MakeClient
) -> None:
    a = await make_client(gateway, "alice")
    h1 = await a.subscribe("room", presence=True)
    leaving = asyncio.ensure_future(h1.unsubscribe())
    await asyncio.sleep(0)
    h2 = await a.subscribe("room", presence=True)  # waits for the unsubscribe, then subscribes
    await leaving
    assert h2.status is ChannelState.SUBSCRIBED and members(gateway, "alice") == ["room"]
