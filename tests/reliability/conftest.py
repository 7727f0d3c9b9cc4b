"""Fixtures shared by the fault tests: a fresh token secret, and peers closed at teardown."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest

from tests._support.peers import Peer


@pytest.fixture
def secret() -> str:
    """A random signing secret for this test's gateways and tokens."""
    return secrets.token_hex(32)


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    """Append the test's :class:`Peer`\\ s here; they are all closed at teardown."""
    made: list[Peer] = []
    yield made
    await asyncio.gather(*(p.close() for p in made), return_exceptions=True)
