"""Fixtures for CollabDoc tests: a real Gateway on 127.0.0.1 (free port) on the rtwidgets
runtime (as in a notebook), model connections and documents closed after each test, and a
condition poller (``wait_until``: the shared one with this folder's bound). Everything
synchronises on conditions with generous timeouts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from rtwidgets.client import ReconnectConfig
from rtwidgets.gateway import Gateway
from rtwidgets.models import Connection
from rtwidgets.models.collab import CollabDoc
from tests._support.waiting import with_default_timeout

TIMEOUT = 15.0  # generous: a condition not met within this is a failure, not slowness
FAST_RECONNECT = ReconnectConfig(base_delay=0.02, max_delay=0.1, jitter_factor=0.0)
_names = itertools.count(1)


wait_until = with_default_timeout(TIMEOUT)


def fresh_channel(prefix: str = "doc") -> str:
    return f"{prefix}:{next(_names)}"


class Replicas:
    """Makes connections and documents on one gateway; closes them all at teardown."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.connections: list[Connection] = []
        self.docs: list[CollabDoc] = []

    def connection(self, user: str) -> Connection:
        conn = Connection(self.gateway.url, token=self.gateway.token(user), reconnect=FAST_RECONNECT)
        self.connections.append(conn)
        return conn.connect(wait=True)

    def doc(self, user: str, channel: str, *, synced: bool = True, **kw: Any) -> CollabDoc:
        doc = CollabDoc(self.connection(user), channel, **kw)
        self.docs.append(doc)
        return doc.wait_synced(TIMEOUT) if synced else doc

    def close(self) -> None:
        for doc in self.docs:
            doc.close()
        for conn in self.connections:
            conn.close()


def make_gateway(**config: Any) -> Gateway:
    return Gateway(port=0, **config).start()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = make_gateway()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def replicas(gateway: Gateway) -> Iterator[Replicas]:
    made = Replicas(gateway)
    try:
        yield made
    finally:
        made.close()


def converged(docs: list[CollabDoc]) -> bool:
    """True when every replica holds the same state and has nothing left to send."""
    if any(d.stats()["outbox"] or d.stats()["in_flight"] or d.stats()["failed"] for d in docs):
        return False
    vectors = {_normalised(d.state_vector()) for d in docs}
    texts = {d.text for d in docs}
    return len(vectors) == 1 and len(texts) == 1


def _normalised(state_vector: bytes) -> tuple[tuple[int, int], ...]:
    from rtwidgets.core.crdt_sync import decode_state_vector

    return tuple(sorted(decode_state_vector(state_vector).items()))
