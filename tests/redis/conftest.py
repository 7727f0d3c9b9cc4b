"""Fixtures: a real ``redis-server`` on a free 127.0.0.1 port, with no persistence.

``redis_server`` is shared by a module (fast); ``restartable_redis`` is per test, for
tests that stop and restart the server on the same port. Tests isolate themselves with
a unique ``key_prefix`` (fixture ``prefix``) instead of flushing a shared server.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests._support.redis_server import RedisServer, running_redis


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def restartable_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to the test, so tests sharing a server never see each other's keys."""
    return "t" + secrets.token_hex(4)
