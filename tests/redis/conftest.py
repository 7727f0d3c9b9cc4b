"""Fixtures: a real ``redis-server`` on a free 127.0.0.1 port, with no persistence.

``redis_server`` is shared by a module (fast); ``restartable_redis`` is per test, for
tests that stop and restart the server on the same port. Tests isolate themselves with
a unique ``key_prefix`` (fixture ``prefix``) instead of flushing a shared server.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_support import REDIS_SERVER, RedisServer


def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from _server(tmp_path_factory)


@pytest.fixture
def restartable_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from _server(tmp_path_factory)


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to the test, so tests sharing a server never see each other's keys."""
    return "t" + secrets.token_hex(4)
