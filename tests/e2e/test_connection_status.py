"""ConnectionStatus in a real page: reconnecting while the link is cut, connected again after."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from . import cells
from .conftest import GatewayProcess, Users, copy_to_docs


def test_connection_status_shows_reconnecting_then_connected(
    users: Users, gateway: GatewayProcess, make_proxy: Any, test_name: str
) -> None:
    proxy = make_proxy(gateway.port)
    token_file = users.token_file("alice", gateway.token("alice"))
    notebook = users.notebook("status", [cells.connect(proxy.url, token_file)])
    (alice,) = users.open(("alice", notebook))

    status = alice.widget("connection_status")
    expect(status).to_have_attribute("data-state", "connected")
    expect(status.locator(".rtw-cs-user")).to_have_text("alice")
    expect(status.locator(".rtw-cs-disconnect")).to_be_enabled()
    copy_to_docs(alice.screenshot(test_name, "connection_status-connected", status), "connection_status.png")

    # The network goes away: open sockets are reset and new ones refused.
    proxy.cut()
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status.locator(".rtw-badge")).to_have_text("reconnecting")
    expect(status.locator(".rtw-cs-reconnect")).to_be_enabled()
    alice.screenshot(test_name, "connection_status-reconnecting", status)

    # The network comes back: the client's next attempt gets through.
    proxy.restore()
    expect(status).to_have_attribute("data-state", "connected", timeout=90_000)
    expect(status.locator(".rtw-badge")).to_have_text("connected")
    assert proxy.accepted >= 2, "the kernel should have opened a second connection through the proxy"
    alice.screenshot(test_name, "connection_status-reconnected", status)
