"""GatewayMonitor on a gateway in another process (``python -m rtwidgets gateway``), read through
its real ``/metrics``: traffic shows up as rates, a crash shows as an error while it is down, and
after the restart the counters begin again at 0 — counted as a restart, never a negative rate.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtwidgets.auth import issue_token
from rtwidgets.sync_client import connect
from rtwidgets.widgets.gateway_monitor import RATES, GatewayMonitor
from tests._support.gateway_proc import GatewayProcess, gateway_processes

from .conftest import wait_until


@pytest.fixture
def secret() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture
def remote(tmp_path: Path, secret: str) -> Iterator[GatewayProcess]:
    with gateway_processes(tmp_path, secret) as spawn:
        yield spawn()


def _publish(gw: GatewayProcess, secret: str, count: int) -> None:
    with connect(gw.url, token=issue_token(secret, "alice", publish=["*"])) as conn:
        room = conn.subscribe("room")
        for i in range(count):
            room.publish({"i": i})


def _no_negative_rates(mon: GatewayMonitor) -> None:
    for series in RATES:
        values = mon.points()[series]
        assert all(v is None or v >= 0 for v in values), (series, values)


def test_monitor_reads_a_gateway_in_another_process(remote: GatewayProcess, secret: str) -> None:
    mon = GatewayMonitor(remote.url, interval=0.2)  # the ws:// URL, mapped to /metrics
    try:
        assert mon.source == f"http://127.0.0.1:{remote.port}/metrics"
        wait_until(lambda: mon.status == "ok", what="first scrape")
        assert mon.current["uptime"] >= 0  # from the exported start time
        _publish(remote, secret, 25)
        wait_until(lambda: mon.current.get("messages_published", 0) >= 25, what="publishes scraped")
        wait_until(lambda: mon.current.get("connections_accepted", 0) >= 1, what="connection counted")
        assert max(v or 0 for v in mon.points()["publish_rate"]) > 0
        _no_negative_rates(mon)
    finally:
        mon.close()


def test_a_restart_is_a_counter_reset_not_a_negative_rate(remote: GatewayProcess, secret: str) -> None:
    mon = GatewayMonitor(f"http://127.0.0.1:{remote.port}/metrics", interval=0.2)
    try:
        _publish(remote, secret, 40)
        wait_until(lambda: mon.current.get("messages_published", 0) >= 40, what="publishes before the crash")
        before = mon.samples
        first_start = mon.current["start_time"]
        remote.kill9()
        wait_until(lambda: mon.status == "error", what="the outage shown")
        assert "unreachable" in mon.error and "retrying" in mon.error
        remote.start()  # same port: the monitor finds it again by itself
        _publish(remote, secret, 3)
        wait_until(lambda: mon.status == "ok" and mon.restarts >= 1, what="restart detected")
        wait_until(lambda: mon.current.get("messages_published") == 3, what="counters from 0 again")
        assert mon.samples > before
        assert mon.error == ""
        assert mon.current["start_time"] > first_start  # the new process's start
        assert mon.restarts == 1  # a reset and a new start time in one sample: one restart
        # The history spans both lives of the gateway, and no rate in it is negative.
        assert max(v or 0 for v in mon.points()["publish_rate"]) > 0
        _no_negative_rates(mon)
    finally:
        mon.close()
