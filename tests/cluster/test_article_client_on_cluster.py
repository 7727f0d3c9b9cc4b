"""The design's reference client across two gateways whose brokers share a Redis Cluster.

The same ``cross`` scenario and assertions as ``tests/redis/test_article_client_across_gateways.py``
(imported from there, so both run every assertion), with :class:`RedisClusterBroker` on the
session's 3-master cluster: every frame either client sees from the other crossed a shard by
sharded pub/sub, and presence crossed the split presence scripts.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from rtwidgets.gateway.brokers.redis_cluster import RedisClusterBroker
from tests._support.node import NODE_MARKS, Observed, finished, require_websocket_node
from tests._support.redis_cluster import RedisClusterProcesses

# The assertions, collected here again and run on this module's `observed`.
from tests.redis.test_article_client_across_gateways import (
    _cross_scenario,
    test_both_subscribe_with_presence_and_are_acked,
    test_clean_disconnect_on_gateway_1_is_a_leave_on_gateway_2,
    test_clients_connect_to_different_gateways,
    test_each_sees_the_others_presence_join_across_gateways,
    test_each_sees_the_others_presence_update_across_gateways,
    test_publish_from_a_acked_and_received_by_b_with_its_event_id,
    test_publish_from_b_received_by_a,
)

__all__ = [
    "test_both_subscribe_with_presence_and_are_acked",
    "test_clean_disconnect_on_gateway_1_is_a_leave_on_gateway_2",
    "test_clients_connect_to_different_gateways",
    "test_each_sees_the_others_presence_join_across_gateways",
    "test_each_sees_the_others_presence_update_across_gateways",
    "test_publish_from_a_acked_and_received_by_b_with_its_event_id",
    "test_publish_from_b_received_by_a",
]

pytestmark = [pytest.mark.cluster, *NODE_MARKS]


@pytest.fixture(scope="module")
def observed(redis_cluster: RedisClusterProcesses) -> Observed:
    require_websocket_node()
    prefix = "x" + secrets.token_hex(4)
    return finished(
        *asyncio.run(_cross_scenario(redis_cluster.url, prefix, RedisClusterBroker)), "cross scenario"
    )
