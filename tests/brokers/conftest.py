"""The broker contract suite's fixtures: every test here runs once per broker in ``BROKERS``.

``broker`` is a started broker with default bounds whose listener is ``heard`` (a
:class:`~tests._support.broker_listener.Collector`); ``make_broker(**bounds)`` starts one
with other bounds (``history_size``, ``state_max_keys``), also delivering to ``heard``;
``unreachable_broker`` is a broker whose backing store cannot be reached (None for a
broker without one). Every broker made is closed at teardown.

Adding a broker to the suite is one more entry in ``BROKERS``: a :class:`BrokerKind`
that builds it (with ``request`` for the fixtures it needs, e.g. a server) and, if it
has a store, builds one pointed at nothing. Mark it like its other tests (``redis``,
``cluster``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rtwidgets.gateway.brokers.base import Broker
from rtwidgets.gateway.brokers.memory import MemoryBroker
from rtwidgets.gateway.brokers.redis import RedisBroker
from rtwidgets.gateway.brokers.redis_cluster import RedisClusterBroker
from tests._support.broker_listener import Collector
from tests._support.net import free_port
from tests._support.redis_cluster import RedisClusterProcesses, redis_cluster  # noqa: F401  (fixture)
from tests._support.redis_server import RedisServer, running_redis
from tests.brokers.frames import MakeBroker

# Bounds every broker takes: history_size (messages retained, and the msgId window),
# state_max_keys (keyed state per channel).
Bounds = dict[str, Any]


@dataclass(frozen=True)
class BrokerKind:
    """How the suite builds one kind of broker (not started)."""

    build: Callable[[pytest.FixtureRequest, Bounds], Broker]
    # A broker whose store is unreachable (nothing listens there), or None: no store to lose.
    build_unreachable: Callable[[], Broker] | None = None


def _memory(request: pytest.FixtureRequest, bounds: Bounds) -> Broker:
    return MemoryBroker(**bounds)


def _redis(request: pytest.FixtureRequest, bounds: Bounds) -> Broker:
    server: RedisServer = request.getfixturevalue("contract_redis")
    # A key prefix of its own: tests sharing the server never see each other's keys.
    return RedisBroker(server.url, key_prefix="c" + secrets.token_hex(4), connect_timeout=2.0, **bounds)


def _redis_unreachable() -> Broker:
    return RedisBroker(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)


def _redis_cluster(request: pytest.FixtureRequest, bounds: Bounds) -> Broker:
    cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
    prefix = "c" + secrets.token_hex(4)
    return RedisClusterBroker(cluster.url, key_prefix=prefix, connect_timeout=2.0, **bounds)


def _redis_cluster_unreachable() -> Broker:
    return RedisClusterBroker(f"redis+cluster://127.0.0.1:{free_port()}", connect_timeout=1.0)


BROKERS = [
    pytest.param(BrokerKind(_memory), id="memory"),
    pytest.param(BrokerKind(_redis, _redis_unreachable), id="redis", marks=pytest.mark.redis),
    pytest.param(
        BrokerKind(_redis_cluster, _redis_cluster_unreachable), id="redis-cluster", marks=pytest.mark.cluster
    ),
]


@pytest.fixture(scope="module")
def contract_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for this module's Redis variants (skips them if not installed)."""
    workdir: Path = tmp_path_factory.mktemp("redis")
    with running_redis(workdir) as server:
        yield server


@pytest.fixture(params=BROKERS)
def broker_kind(request: pytest.FixtureRequest) -> BrokerKind:
    kind: BrokerKind = request.param
    return kind


@pytest.fixture
def heard() -> Collector:
    """What the brokers of this test delivered, in order."""
    return Collector()


@pytest.fixture
async def make_broker(
    request: pytest.FixtureRequest, broker_kind: BrokerKind, heard: Collector
) -> AsyncIterator[MakeBroker]:
    made: list[Broker] = []

    async def make(**bounds: Any) -> Broker:
        broker = broker_kind.build(request, bounds)
        broker.set_listener(heard)
        made.append(broker)
        await broker.start()
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture
async def broker(make_broker: MakeBroker) -> Broker:
    """A started broker with default bounds, delivering to ``heard``."""
    return await make_broker()


@pytest.fixture
async def unreachable_broker(broker_kind: BrokerKind) -> AsyncIterator[Broker | None]:
    if broker_kind.build_unreachable is None:
        yield None
        return
    broker = broker_kind.build_unreachable()
    yield broker
    await broker.close()
