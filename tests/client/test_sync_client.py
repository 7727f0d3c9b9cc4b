"""The blocking facade, used from plain threads (no event loop in the caller)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rtwidgets import sync_client
from rtwidgets.client import AuthenticationError, ServerError
from rtwidgets.core.connection import ConnectionState, ReconnectConfig
from rtwidgets.gateway import Gateway

T = 10.0


@pytest.fixture
def sync_gateway() -> Iterator[Gateway]:
    gw = Gateway("127.0.0.1", 0).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_sync_facade_from_plain_threads(sync_gateway: Gateway) -> None:
    gw = sync_gateway
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    ready = threading.Event()

    def reader() -> None:
        try:
            with sync_client.connect(gw.url, gw.token("bob"), timeout=T) as conn:
                ch = conn.subscribe("notes", presence=True, presence_data={"role": "reader"})
                ready.set()
                ch.wait_for(lambda h: len(h.messages) == 5, timeout=T)
                results["messages"] = [m["data"] for m in ch.messages]
                ch.wait_for(lambda h: len(h.users) == 2, timeout=T)
                results["users"] = sorted(ch.users)
        except BaseException as exc:  # reported to the main thread
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert ready.wait(T)
    conn = sync_client.connect(
        gw.url, gw.token("alice"), timeout=T, reconnect=ReconnectConfig(base_delay=0.02)
    )
    try:
        assert conn.state is ConnectionState.CONNECTED and conn.user_id == "alice"
        ch = conn.subscribe("notes", presence=True)
        acks = [ch.publish({"i": i}) for i in range(5)]
        assert [a["offset"] for a in acks if a is not None] == [1, 2, 3, 4, 5]
        thread.join(T)
        assert not thread.is_alive()
        assert errors == []
        assert results["messages"] == [{"i": i} for i in range(5)]
        assert results["users"] == ["alice", "bob"]
        assert conn.stats().state is ConnectionState.CONNECTED
        assert ch.members and all("clientId" in m for m in ch.members)
    finally:
        conn.close()
    assert conn.state is ConnectionState.DISCONNECTED


def test_sync_errors_are_raised(sync_gateway: Gateway) -> None:
    gw = sync_gateway
    with pytest.raises(AuthenticationError):
        sync_client.connect(gw.url, "forged-token", timeout=T)
    conn = sync_client.connect(gw.url, gw.token("eve", ["open:*"], publish=[]), timeout=T)
    try:
        with pytest.raises(ServerError, match="forbidden"):
            conn.subscribe("closed")
        ch = conn.subscribe("open:1")
        with pytest.raises(ServerError, match="forbidden"):
            ch.publish("x")
        ch.unsubscribe()
        assert ch.status.value == "unsubscribed"
    finally:
        conn.close()
