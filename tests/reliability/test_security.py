"""Security tests (marker ``security``): authentication, per-channel permissions, limits,
isolation between channels, tokens kept out of logs, and the browser Origin allow-list.

Each refusal must be explicit (a close code or an ``error`` frame with a code) and must not
leak anything to other channels: a *victim* client subscribed to a private channel checks,
with a final ping round trip, that it received nothing but its own frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from rtwidgets.auth import issue_token
from rtwidgets.client import AuthenticationError, ConnectionState, RealtimeConnection
from rtwidgets.core.connection import ReconnectConfig
from rtwidgets.gateway import Gateway
from tests._support.ws import open_ws

pytestmark = pytest.mark.security

RawClient = Any  # tests/conftest.py's RawClient (conftest modules are not importable by name)
Connect = Callable[..., Awaitable[RawClient]]
MakeGateway = Callable[..., Awaitable[Gateway]]
TIMEOUT = 10.0


async def nothing_leaked(victim: RawClient) -> None:
    """The victim's inbox holds nothing but the answer to a fresh ping (all frames before it are
    read first, so anything leaked earlier would show up here)."""
    answer, before = await victim.request({"type": "ping", "t": 1})
    assert answer["type"] == "ack"
    leaked = [f for f in [*victim.inbox, *before] if f.get("type") != "pong"]
    assert leaked == [], f"frames leaked to the victim: {leaked}"


def b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def auth_close(gw: Gateway, token: str | None) -> tuple[int | None, str]:
    ws = await open_ws(gw.url if token is None else f"{gw.url}/?token={token}")
    try:
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    finally:
        await ws.close()
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")


@pytest.mark.parametrize(
    "kind", ["forged", "expired", "alg-none", "hs512-confusion", "tampered-claims", "not-yet-valid"]
)
async def test_bad_tokens_are_refused_with_4001(gateway: Gateway, kind: str) -> None:
    now = int(time.time())
    good = gateway.token("mallory", ["public"])
    header, _payload, sig = good.split(".")
    tokens = {
        "forged": issue_token("not-the-gateway-secret-but-long-enough!!", "mallory"),
        "expired": jwt.encode(
            {"sub": "mallory", "exp": now - 5, "channels": ["*"]}, gateway.secret, algorithm="HS256"
        ),
        # The classic: an unsigned token claiming 'alg: none'.
        "alg-none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'mallory', 'channels': ['*']})}.",
        # Signed with the right secret but an algorithm the gateway does not accept.
        "hs512-confusion": jwt.encode(
            {"sub": "mallory", "channels": ["*"]}, gateway.secret, algorithm="HS512"
        ),
        # A valid signature over other claims: widening the channels breaks the signature.
        "tampered-claims": f"{header}.{b64({'sub': 'mallory', 'exp': now + 60, 'channels': ['*']})}.{sig}",
        "not-yet-valid": jwt.encode(
            {"sub": "mallory", "nbf": now + 3600, "channels": ["*"]}, gateway.secret, algorithm="HS256"
        ),
    }
    assert await auth_close(gateway, tokens[kind]) == (4001, "Authentication failed")
    assert gateway.stats()["connections"] == 0


async def test_client_with_refused_token_fails_fast_and_does_not_retry(gateway: Gateway) -> None:
    attempts = 0

    def auth() -> str:
        nonlocal attempts
        attempts += 1
        return issue_token("a-different-secret-of-sufficient-length", "mallory")

    fast = ReconnectConfig(base_delay=0.01, max_delay=0.05)
    conn = RealtimeConnection(gateway.url, auth=auth, reconnect=fast)
    with pytest.raises(AuthenticationError):
        await conn.connect(timeout=TIMEOUT)
    assert conn.state in (ConnectionState.DISCONNECTED, ConnectionState.FAILED)
    assert attempts == 1  # 4001 is final: no reconnect storm against the auth endpoint
    assert gateway.stats()["auth_failures"] == 1
    await conn.close()


async def test_scoped_token_cannot_reach_other_channels(gateway: Gateway, connect: Connect) -> None:
    victim = await connect(gateway, "victim", channels=["secret:*"])
    await victim.subscribe("secret:plans", presence=True, history=10)
    await victim.request({"type": "ping"})  # settle: own presence frames are read
    victim.inbox.clear()

    mallory = await connect(gateway, "mallory", channels=["public:*"])
    attempts = [
        {"type": "subscribe", "channel": "secret:plans", "options": {"history": 100}},
        {"type": "subscribe", "channel": "secret:*", "options": {}},  # a pattern is not a channel
        {"type": "subscribe", "channel": "public:x", "options": {"lastEventId": "0"}},  # allowed
        {"type": "publish", "channel": "secret:plans", "data": "injected"},
        {"type": "publish", "channel": "secret:plans", "data": "eph", "ephemeral": True},
        {"type": "publish", "channel": "secret:plans", "data": None, "key": "title"},
        {"type": "presence_update", "channel": "secret:plans", "data": {"spoof": True}},
        {"type": "sync", "channel": "secret:plans", "lastEventId": "0"},
        {"type": "unsubscribe", "channel": "secret:plans"},
    ]
    codes = []
    for frame in attempts:
        answer, _ = await mallory.request(frame)
        codes.append(answer.get("code", answer["type"]))
    assert codes == [
        "forbidden",
        "invalid_field",
        "ack",
        "forbidden",
        "forbidden",
        "forbidden",
        "not_subscribed",
        "forbidden",
        "not_subscribed",
    ]
    # Every refusal explains itself.
    errors = [f for f in mallory.frames if f.get("type") == "error"]
    assert all(e["reason"] and e["channel"] == "secret:plans" for e in errors if e["code"] == "forbidden")
    await nothing_leaked(victim)


@pytest.mark.parametrize("action", ["subscribe", "publish", "presence"])
async def test_each_permission_is_checked_separately(gateway: Gateway, connect: Connect, action: str) -> None:
    perms = {"subscribe": ["room"], "publish": ["room"], "presence": ["room"]}
    perms[action] = []
    client = await connect(
        gateway, "u", channels=perms["subscribe"], publish=perms["publish"], presence=perms["presence"]
    )
    frame = {
        "subscribe": {"type": "subscribe", "channel": "room", "options": {}},
        "publish": {"type": "publish", "channel": "room", "data": 1},
        "presence": {"type": "subscribe", "channel": "room", "options": {"presence": True}},
    }[action]
    answer, _ = await client.request(frame)
    assert answer["type"] == "error" and answer["code"] == "forbidden", answer
    # The other actions the token does grant still work.
    if action != "subscribe":
        await client.subscribe("room")
    if action != "publish":
        ack = await client.publish("room", "ok")
        assert ack["offset"] >= 1


async def test_oversized_presence_data_is_refused(make_gateway: MakeGateway, connect: Connect) -> None:
    gw = await make_gateway(max_presence_bytes=256)
    victim = await connect(gw, "victim")
    await victim.subscribe("room", presence=True)
    await victim.request({"type": "ping"})
    victim.inbox.clear()
    client = await connect(gw, "big")
    answer, _ = await client.request(
        {
            "type": "subscribe",
            "channel": "room",
            "options": {"presence": True, "presenceData": {"x": "y" * 999}},
        }
    )
    assert answer["code"] == "too_large" and "256" in answer["reason"]
    await client.subscribe("room", presence=True, presenceData={"x": "small"})
    answer, _ = await client.request({"type": "presence_update", "channel": "room", "data": {"x": "y" * 300}})
    assert answer["code"] == "too_large"
    # The victim saw the legitimate join only, never the oversized data.
    await victim.take_type("presence_join")
    await nothing_leaked(victim)
    assert [m["data"] for m in (await client.request({"type": "ping"}))[1] if "data" in m] == []


async def test_publish_flood_over_rate_limit_is_refused_and_not_delivered(
    make_gateway: MakeGateway, connect: Connect
) -> None:
    # A refill this slow adds no token during the test: exactly the burst is accepted,
    # whatever the machine's speed.
    gw = await make_gateway(publish_rate=0.001, publish_burst=20)
    reader = await connect(gw, "reader")
    await reader.subscribe("room")
    flooder = await connect(gw, "flooder")
    # Fire 200 publishes without waiting (a flood), each with an id, then collect the answers.
    for i in range(200):
        await flooder.send({"type": "publish", "channel": "room", "data": i, "_id": 10_000 + i})
    answers = [
        await flooder.take(lambda f, i=i: f.get("id") == 10_000 + i and f.get("type") in ("ack", "error"))
        for i in range(200)
    ]
    acked = [i for i, a in enumerate(answers) if a["type"] == "ack"]
    refused = [a for a in answers if a["type"] == "error"]
    assert acked == list(range(20)), "exactly the burst (the first 20) is accepted"
    assert len(refused) == 180
    assert all(a["code"] == "rate_limited" and "retry in" in a["reason"] for a in refused)
    # The reader gets exactly the acked messages, in order: refused ones were never published.
    got = [(await reader.take_type("message"))["data"] for _ in acked]
    assert got == acked
    await nothing_leaked(reader)
    # The flooder's connection is still usable (refusal never closes it).
    assert (await flooder.request({"type": "ping"}))[0]["type"] == "ack"


async def test_wildcard_names_cannot_widen_access(gateway: Gateway, connect: Connect) -> None:
    client = await connect(gateway, "u", channels=["team:a*"])
    for channel in ("team:*", "team:a?", "team:b", "*"):
        answer, _ = await client.request({"type": "subscribe", "channel": channel, "options": {}})
        assert answer["type"] == "error", (channel, answer)
        assert answer["code"] in ("forbidden", "invalid_field"), (channel, answer)
    await client.subscribe("team:alpha")


async def test_expired_session_is_closed_4002_and_client_resumes_with_fresh_token(
    make_gateway: MakeGateway,
) -> None:
    # A long idle timeout: the close must come from the token's expiry (4002), not idleness (4009).
    gw = await make_gateway(heartbeat_timeout=30.0, ping_interval=None)
    issued: list[float] = []

    def auth() -> str:
        issued.append(time.time())
        return gw.token("alice", ttl=1 if len(issued) == 1 else 3600)  # the first one expires quickly

    conn = RealtimeConnection(gw.url, auth=auth, reconnect=ReconnectConfig(base_delay=0.01, max_delay=0.1))
    states: list[ConnectionState] = []
    conn.on_state_change(lambda cur, prev, reason: states.append(cur))
    await conn.connect(timeout=TIMEOUT)
    room = await conn.subscribe("room")
    await conn.wait_for_state(ConnectionState.RECONNECTING, timeout=TIMEOUT)
    await conn.wait_for_state(ConnectionState.CONNECTED, timeout=TIMEOUT)
    assert conn.stats().last_close_code == 4002  # closed because the token expired
    assert len(issued) >= 2  # a fresh token was fetched for the reconnect
    ack = await room.publish("after-refresh")
    assert ack is not None and ack["offset"] == 1
    await conn.close()


async def test_allowed_origins_refuse_other_browsers(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(allowed_origins=("https://lab.example.org",))
    token = gw.token("alice")
    ok = await open_ws(f"{gw.url}/?token={token}", origin="https://lab.example.org")
    assert json.loads(await ok.recv())["type"] == "connected"
    await ok.close()
    for origin in ("https://evil.example.com", "null", "https://lab.example.org.evil.com"):
        with pytest.raises(InvalidStatus) as info:
            await open_ws(f"{gw.url}/?token={token}", origin=origin)
        assert info.value.response.status_code == 403
    with pytest.raises(InvalidStatus):  # no Origin at all is not on the list either
        await open_ws(f"{gw.url}/?token={token}")


def _leaks(caplog: pytest.LogCaptureFixture, secrets: tuple[str, ...], loggers: tuple[str, ...]) -> list[str]:
    """Log lines (from loggers whose name starts with one of ``loggers``) containing a secret."""
    lines = [
        f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name.startswith(loggers)
    ]
    return [line[:160] for line in lines if any(s in line for s in secrets)]


async def test_tokens_never_appear_in_gateway_logs(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw = await make_gateway()
    good = gw.token("alice")
    forged = issue_token("wrong-secret-wrong-secret-wrong-secret!", "mallory")
    quiet = logging.getLogger("test.rawclient")  # the test's own raw client is not under test
    # Token in the query string (websockets logs request lines at DEBUG) and in a header.
    raw = await open_ws(f"{gw.url}/?token={good}", logger=quiet)
    await raw.recv()
    await raw.send("{not json")
    await raw.recv()
    await raw.close()
    raw = await open_ws(gw.url, logger=quiet, additional_headers={"Authorization": f"Bearer {good}"})
    await raw.recv()
    await raw.close()
    ws = await open_ws(f"{gw.url}/?token={forged}", logger=quiet)
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.close_code == 4001
    gateway_records = [r for r in caplog.records if r.name.startswith("rtwidgets.gateway")]
    assert any(r.levelno == logging.DEBUG for r in gateway_records), "debug logging was not captured"
    secrets = (good, forged, gw.secret, good.split(".")[2], forged.split(".")[2])
    assert _leaks(caplog, secrets, ("rtwidgets",)) == []


async def test_tokens_never_appear_in_client_logs(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = gateway.token("alice")
    forged = issue_token("wrong-secret-wrong-secret-wrong-secret!", "mallory")
    conn = RealtimeConnection(gateway.url, token=good)
    await conn.connect(timeout=TIMEOUT)
    handle = await conn.subscribe("room")
    await handle.publish({"x": 1})
    await conn.close()
    bad = RealtimeConnection(gateway.url, token=forged)
    with pytest.raises(AuthenticationError):
        await bad.connect(timeout=TIMEOUT)
    await bad.close()
    secrets = (good, forged, good.split(".")[2], forged.split(".")[2])
    # Everything logged while the client ran: its own logger and the websockets library's.
    assert _leaks(caplog, secrets, ("rtwidgets", "websockets")) == []


def test_cli_gateway_logs_no_tokens_and_enforces_allowed_origin(tmp_path: Path) -> None:
    """The real CLI process at --log-level debug: its whole stderr is checked for the token."""
    from websockets.sync.client import connect

    secret = "cli-secret-" + "s" * 32
    err = (tmp_path / "gw.err").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtwidgets",
            "gateway",
            "--port",
            "0",
            "--secret",
            secret,
            "--log-level",
            "debug",
            "--allowed-origin",
            "https://ok.example",
        ],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on ws://" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        token = issue_token(secret, "alice")
        with connect(f"{url}/?token={token}", origin="https://ok.example", open_timeout=TIMEOUT) as ws:
            assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "connected"
            ws.send(json.dumps({"type": "subscribe", "channel": "room", "_id": 1}))
            while json.loads(ws.recv(timeout=TIMEOUT)).get("type") != "ack":
                pass
        with (
            pytest.raises(InvalidStatus) as info,
            connect(f"{url}/?token={token}", origin="https://bad.example", open_timeout=TIMEOUT),
        ):
            pass
        assert info.value.response.status_code == 403
    finally:
        proc.terminate()
        assert proc.wait(timeout=TIMEOUT) == 0
        if proc.stdout is not None:
            proc.stdout.close()
    err.seek(0)
    log_text = err.read()
    err.close()
    assert "DEBUG" in log_text  # debug logging really was on
    assert token not in log_text and token.split(".")[2] not in log_text
    assert secret not in log_text
