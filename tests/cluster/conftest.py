"""Fixtures of the Redis Cluster tests: the session's shared cluster (``redis_cluster``) and a
publisher that keeps messages flowing while the cluster changes under it.

Every test here is marked ``cluster``. Tests that only move slots share the session cluster
(isolated by a key prefix); a test that kills a node starts a cluster of its own.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from rtwidgets.gateway.brokers.base import Broker, BrokerUnavailable
from tests._support.redis_cluster import redis_cluster  # noqa: F401  (fixture)

RETRY_FOR = 60.0  # generous bound on one publish retried through a failover


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in item.nodeid:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
def prefix() -> str:
    return "k" + secrets.token_hex(4)


class Publisher:
    """Publishes ``data = 0, 1, 2, ...`` on one channel, each with a msgId, retrying a publish
    answered ``unavailable`` with the same msgId (so a retry is never stored twice) until the
    broker takes it. ``acked`` holds each message's frame as finally acknowledged."""

    def __init__(self, broker: Broker, channel: str) -> None:
        self.broker = broker
        self.channel = channel
        self.acked: list[dict[str, Any]] = []
        self.unavailable = 0  # publishes answered ``unavailable`` (then retried)

    async def publish(self, count: int, pause: float = 0.005) -> None:
        for _ in range(count):
            n = len(self.acked)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + RETRY_FOR
            while True:
                try:
                    frame = {"type": "message", "data": n, "senderId": "p"}
                    self.acked.append(await self.broker.publish(self.channel, frame, msg_id=f"m{n}"))
                    break
                except BrokerUnavailable:
                    self.unavailable += 1
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            await asyncio.sleep(pause)
