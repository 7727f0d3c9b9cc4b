"""Gateway lifecycle and HTTP endpoints: start/stop (async and sync), graceful 1001,
/healthz, /metrics, 404, errors at start, configuration validation."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request

import psutil
import pytest

from rtwidgets.gateway import BrokerUnavailable, Gateway, GatewayConfig, MemoryBroker


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def port_is_free(port: int) -> bool:
    """True if a new server could listen on ``port`` (as asyncio servers do, with
    SO_REUSEADDR, since connections the gateway closed linger in TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


async def test_healthz_and_metrics_over_http(gateway: Gateway, connect) -> None:
    a = await connect(gateway, "alice")
    await a.subscribe("room")
    await a.publish("room", 1)
    await a.send("not json")
    await a.take_type("error")
    http_url = "http://" + gateway.url.removeprefix("ws://")
    status, ctype, body = await asyncio.to_thread(http_get, http_url + "/healthz")
    assert status == 200 and ctype == "application/json"
    assert json.loads(body) == {"status": "ok", "connections": 1, "channels": 1}
    status, ctype, body = await asyncio.to_thread(http_get, http_url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    lines = body.splitlines()
    assert "rtwidgets_connections 1.0" in lines
    assert "rtwidgets_connections_accepted_total 1.0" in lines
    assert "rtwidgets_messages_published_total 1.0" in lines
    assert "rtwidgets_messages_delivered_total 1.0" in lines
    assert 'rtwidgets_errors_total{code="bad_json"} 1.0' in lines
    assert "rtwidgets_subscriptions 1.0" in lines
    for name in (
        "rtwidgets_slow_consumer_closes_total",
        "rtwidgets_auth_failures_total",
        "rtwidgets_publish_rate",
    ):
        assert any(line.startswith(name + " ") for line in lines), name
    status, _, _ = await asyncio.to_thread(http_get, http_url + "/nope")
    assert status == 404
    status, _, _ = await asyncio.to_thread(http_get, http_url + "/")
    assert status == 426  # a plain GET on the WebSocket endpoint


async def test_two_gateways_have_separate_metrics(make_gateway, connect) -> None:
    one = await make_gateway()
    two = await make_gateway()
    await connect(one)
    assert one.stats()["connections_total"] == 1 and two.stats()["connections_total"] == 0
    assert b"rtwidgets_connections_accepted_total 0.0" in two.metrics.render()


async def test_graceful_stop_closes_clients_with_1001(connect) -> None:
    gw = Gateway(port=0)
    async with gw:
        assert repr(gw) == f"<Gateway ws://127.0.0.1:{gw.port} running>"
        a = await connect(gw, "alice")
        b = await connect(gw, "bob")
        await a.subscribe("room", presence=True)
        stopping = asyncio.create_task(gw.stop_async())
        for client in (a, b):
            assert await client.closed() == (1001, "Gateway shutting down")
        await stopping
    assert repr(gw) == "<Gateway stopped>"
    assert port_is_free(gw.port)
    await gw.stop_async()  # idempotent


async def test_restart_stop_closes_clients_with_1012(connect) -> None:
    gw = Gateway(port=0)
    await gw.start_async()
    a = await connect(gw, "alice")
    stopping = asyncio.create_task(gw.stop_async(restart=True))
    assert await a.closed() == (1012, "Gateway restarting")
    await stopping
    assert port_is_free(gw.port)


def test_sync_start_stop_from_a_plain_thread_leaks_nothing() -> None:
    errors: list[BaseException] = []
    result: dict[str, object] = {}

    def body() -> None:
        try:
            threads_before = {t.ident for t in threading.enumerate()}
            gw = Gateway(port=0).start()
            assert gw.start() is gw  # idempotent
            result["port"] = gw.port
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10):
                pass
            status, _, body_text = http_get(f"http://127.0.0.1:{gw.port}/healthz")
            assert status == 200 and json.loads(body_text)["status"] == "ok"
            gw.stop()
            gw.stop()
            result["free"] = port_is_free(gw.port)
            # Only the shared runtime thread may have appeared; nothing per gateway.
            new = [t for t in threading.enumerate() if t.ident not in threads_before]
            result["new_threads"] = sorted(t.name for t in new)
            # A second start/stop cycle (the runtime already exists) opens no extra fds.
            fds = psutil.Process().num_fds()
            again = Gateway(port=0).start()
            with socket.create_connection(("127.0.0.1", again.port), timeout=10):
                pass
            again.stop()
            result["fd_delta"] = psutil.Process().num_fds() - fds
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(60)
    assert not errors, errors
    assert result["free"] is True
    assert set(result["new_threads"]) <= {"rtwidgets-runtime"}
    assert result["fd_delta"] <= 0


async def test_sync_stop_on_own_loop_is_refused(gateway: Gateway) -> None:
    with pytest.raises(RuntimeError, match="stop_async"):
        gateway.stop()


async def test_start_on_busy_port_raises_oserror_and_leaves_nothing_running(gateway: Gateway) -> None:
    broker = MemoryBroker()
    other = Gateway(port=gateway.port, broker=broker)
    with pytest.raises(OSError):
        await other.start_async()
    assert repr(other) == "<Gateway stopped>" and broker._closed


class UnreachableBroker(MemoryBroker):
    async def start(self) -> None:
        raise BrokerUnavailable("nothing listens there")


async def test_broker_unavailable_at_start_is_raised() -> None:
    gw = Gateway(port=0, broker=UnreachableBroker())
    with pytest.raises(BrokerUnavailable, match="nothing listens"):
        await gw.start_async()
    assert not gw.running
    with pytest.raises(RuntimeError, match="not started"):
        _ = gw.url


def test_configuration_is_validated() -> None:
    with pytest.raises(TypeError, match="unknown GatewayConfig option"):
        Gateway(history_sise=10)
    with pytest.raises(ValueError, match="history_size"):
        GatewayConfig(history_size=0)
    with pytest.raises(ValueError, match="max_message_bytes"):
        GatewayConfig(max_message_bytes=10, hard_max_bytes=5)
    with pytest.raises(ValueError, match="allowed_origins"):
        GatewayConfig(allowed_origins="http://x")
    with pytest.raises(ValueError, match="either broker= or redis="):
        Gateway(broker=MemoryBroker(), redis="redis://127.0.0.1:1")
    gw = Gateway(secret="s" * 32, config=GatewayConfig(history_size=5), publish_rate=10.0)
    assert gw.config.history_size == 5 and gw.config.publish_rate == 10.0
    assert gw.config.effective_dedupe_window == 5
    assert len(Gateway().secret) == 64 and Gateway().secret != Gateway().secret


def test_tokens_issued_by_the_gateway_carry_permissions() -> None:
    from rtwidgets.auth import verify_token

    gw = Gateway()
    claims = verify_token(gw.secret, gw.token("alice", ["chat:*"], publish=[], ttl=60))
    assert claims.user_id == "alice"
    assert claims.can("subscribe", "chat:1") and not claims.can("publish", "chat:1")
    assert claims.can("presence", "chat:1") and not claims.can("subscribe", "other")
