"""Handshake authentication (4001), Bearer header, expiry during a session (4002),
Origin checks, and tokens never appearing in logs."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import jwt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtwidgets.auth import issue_token
from rtwidgets.gateway import Gateway


async def close_code_of(raw_ws, url: str, **kwargs) -> tuple[int | None, str]:
    ws = await raw_ws(url, **kwargs)
    await asyncio.wait_for(ws.wait_closed(), 10)
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, "")


def expired_token(secret: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now - 100, "exp": now - 10, "channels": ["*"]}, secret, "HS256")


@pytest.mark.security
@pytest.mark.parametrize("kind", ["missing", "empty", "garbage", "forged", "expired", "no-sub"])
async def test_bad_tokens_are_closed_with_4001(gateway: Gateway, raw_ws, kind: str) -> None:
    token = {
        "missing": None,
        "empty": "",
        "garbage": "not.a.jwt",
        "forged": issue_token("some-other-secret", "alice"),
        "expired": expired_token(gateway.secret),
        "no-sub": jwt.encode({"channels": ["*"]}, gateway.secret, "HS256"),
    }[kind]
    url = gateway.url if token is None else f"{gateway.url}/?token={token}"
    code, reason = await close_code_of(raw_ws, url)
    assert (code, reason) == (4001, "Authentication failed")
    assert gateway.stats()["auth_failures"] == 1
    assert gateway.stats()["connections"] == 0


@pytest.mark.security
async def test_bearer_header_is_accepted(gateway: Gateway, raw_ws) -> None:
    token = gateway.token("bob")
    ws = await raw_ws(gateway.url, additional_headers={"Authorization": f"Bearer {token}"})
    connected = json.loads(await ws.recv())
    assert connected["type"] == "connected" and connected["userId"] == "bob"


@pytest.mark.security
async def test_token_expiring_during_session_closes_with_4002(make_gateway, connect) -> None:
    gw = await make_gateway(heartbeat_timeout=0.4, ping_interval=None)
    client = await connect(gw, "alice", ttl=1)

    # Keep talking so the connection never idles out: the expiry check must close it.
    async def ping_until_closed() -> None:
        try:
            while True:
                await client.send({"type": "ping"})
                await client.take_type("pong")
        except ConnectionClosed:
            return

    await asyncio.wait_for(ping_until_closed(), 10)
    code, reason = await client.closed()
    assert (code, reason) == (4002, "Token expired")


@pytest.mark.security
async def test_origin_allow_list(make_gateway, raw_ws) -> None:
    gw = await make_gateway(allowed_origins=("http://notebook.local",))
    token = gw.token("alice")
    with pytest.raises(InvalidStatus) as info:
        await raw_ws(f"{gw.url}/?token={token}", origin="http://evil.example")
    assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        await raw_ws(f"{gw.url}/?token={token}")  # no Origin at all is refused too
    ws = await raw_ws(f"{gw.url}/?token={token}", origin="http://notebook.local")
    assert json.loads(await ws.recv())["type"] == "connected"


@pytest.mark.security
async def test_tokens_never_appear_in_logs(gateway: Gateway, connect, raw_ws, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bad = issue_token("wrong-secret", "eve")
    assert (await close_code_of(raw_ws, f"{gateway.url}/?token={bad}"))[0] == 4001
    good = gateway.token("alice")
    client = await connect(gateway, token=good)
    await client.subscribe("room")
    await client.publish("room", "hello")
    bearer = gateway.token("bob")
    ws = await raw_ws(gateway.url, additional_headers={"Authorization": f"Bearer {bearer}"})
    await ws.recv()
    await ws.close()
    await client.close()
    # The test's own websockets client logs its request line; only server-side records count.
    server_records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any(r.name == "rtwidgets.gateway" for r in server_records)
    text = "\n".join(r.getMessage() for r in server_records)
    for secret_value in (bad, good, bearer, gateway.secret):
        assert secret_value not in text
    # The handshake line and the Authorization header are logged, redacted.
    assert "GET /?token=*** HTTP/1.1" in text
    assert "Authorization: Bearer ***" in text
