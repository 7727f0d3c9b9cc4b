"""Shared fixture of the client tests: ``make_client``, connected clients closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtwidgets.client import RealtimeConnection
from rtwidgets.gateway import Gateway
from tests._support.clients import FAST, MakeClient

T = 10.0  # generous timeout for a connect


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """``await make_client(gw, user, **kw)``: a connected client, closed at teardown."""
    clients: list[RealtimeConnection] = []

    async def factory(
        gw: Gateway, user: str = "alice", *, connect: bool = True, **kw: Any
    ) -> RealtimeConnection:
        if "token" not in kw and "auth" not in kw:
            kw["token"] = gw.token(user)
        kw.setdefault("reconnect", FAST)
        conn = RealtimeConnection(gw.url, **kw)
        clients.append(conn)
        if connect:
            await conn.connect(timeout=T)
        return conn

    yield factory
    for conn in clients:
        await conn.close()
