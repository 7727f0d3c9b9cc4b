"""Fixtures for model and widget tests: a real Gateway on 127.0.0.1 (free port) run on the
rtwidgets runtime (as in a notebook), model connections closed after each test, and a
condition poller (``wait_until``: the shared one with this folder's bound). No kernel is
needed: ipywidgets keeps state without one (a dummy comm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rtwidgets.client import ReconnectConfig
from rtwidgets.gateway import Gateway
from rtwidgets.models import Connection
from rtwidgets.widgets._base import STATIC_DIR
from tests._support.waiting import with_default_timeout

TIMEOUT = 10.0  # generous: a condition not met within this is a failure, not slowness


wait_until = with_default_timeout(TIMEOUT)


@pytest.fixture(scope="session", autouse=True)
def _bundle_built() -> None:
    if not (STATIC_DIR / "chat.js").is_file():
        pytest.fail("rtwidgets/static/*.js missing: run `bash scripts/dev.sh setup` (builds the JS bundle)")


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway(port=0).start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def connect(gateway: Gateway) -> Iterator[Callable[..., Connection]]:
    """``connect(user, wait=True, **token_kw)`` -> a connected :class:`Connection` (closed after)."""
    made: list[Connection] = []

    def make(user: str, *, wait: bool = True, publish: Any = None, **client_kw: Any) -> Connection:
        client_kw.setdefault("reconnect", ReconnectConfig(base_delay=0.05, max_delay=0.2, jitter_factor=0.0))
        conn = Connection(gateway.url, token=gateway.token(user, publish=publish), **client_kw)
        made.append(conn)
        return conn.connect(wait=True) if wait else conn

    yield make
    for conn in made:
        conn.close()
