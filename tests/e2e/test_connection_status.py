"""ConnectionStatus (and an Inspector) in a real page: reconnecting while the link is cut,
connected again after; the Disconnect and Reconnect buttons work."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from . import cells
from .conftest import GatewayProcess, Users, copy_to_docs


def test_connection_status_shows_reconnecting_then_connected(
    users: Users, gateway: GatewayProcess, make_proxy: Any, test_name: str
) -> None:
    proxy = make_proxy(gateway.port)
    token_file = users.token_file("alice", gateway.token("alice"))
    notebook = users.notebook("status", [cells.connect(proxy.url, token_file), cells.inspector()])
    (alice,) = users.open(("alice", notebook))

    status = alice.widget("connection_status")
    expect(status).to_have_attribute("data-state", "connected")
    expect(status.locator(".rtw-cs-user")).to_have_text("alice")
    expect(status.locator(".rtw-cs-disconnect")).to_be_enabled()
    inspector = alice.widget("inspector")
    expect(inspector).to_have_attribute("data-state", "connected")
    # Its live charts (RTT, frames in/out, outbound queue) are small uPlot canvases, fed by the
    # snapshot ticks: points arrive while the page is open.
    expect(inspector).to_have_attribute("data-charts", "uplot")
    expect(inspector.locator(".rtw-insp-chart canvas")).to_have_count(4)
    for chart in inspector.locator(".rtw-insp-chart").all():
        expect(chart.locator("canvas")).to_be_visible()
    expect(inspector).to_have_attribute("data-points", re.compile(r"^([3-9]|\d{2,})$"))
    queue = inspector.locator('.rtw-insp-chart[data-series="queue_size"] .rtw-insp-chart-value')
    expect(queue).to_have_text("0")  # nothing waiting to be sent
    copy_to_docs(alice.screenshot(test_name, "connection_status-connected", status), "connection_status.png")

    # The network goes away: open sockets are reset and new ones refused.
    proxy.drop_new(True)
    proxy.cut()
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status.locator(".rtw-badge")).to_have_text("reconnecting")
    expect(status.locator(".rtw-cs-reconnect")).to_be_enabled()
    expect(inspector).to_have_attribute("data-state", "reconnecting")
    alice.screenshot(test_name, "connection_status-reconnecting", status)

    # The network comes back: the client's next attempt gets through.
    proxy.drop_new(False)
    expect(status).to_have_attribute("data-state", "connected", timeout=90_000)
    expect(status.locator(".rtw-badge")).to_have_text("connected")
    stats = proxy.stats()
    forwarded = stats.connections_total - stats.connections_refused  # reached the gateway
    assert forwarded >= 2, "the kernel should have opened a second connection through the proxy"
    expect(inspector).to_have_attribute("data-state", "connected")
    # The inspector logged what happened since it was shown (the drop and the recovery).
    expect(inspector.locator(".rtw-ev").first).to_be_visible()
    alice.screenshot(test_name, "connection_status-reconnected", status)
    copy_to_docs(alice.screenshot(test_name, "inspector", inspector), "inspector.png")

    # The buttons are intents to the kernel: Disconnect closes on purpose (no automatic retry),
    # Reconnect connects again.
    status.locator(".rtw-cs-disconnect").click()
    expect(status).to_have_attribute("data-state", "disconnected")
    expect(status.locator(".rtw-cs-disconnect")).to_be_disabled()
    status.locator(".rtw-cs-reconnect").click()
    expect(status).to_have_attribute("data-state", "connected")
