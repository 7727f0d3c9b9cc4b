"""GatewayMonitor in a real JupyterLab page: a remote gateway (the e2e gateway subprocess, through
its /metrics), an embedded one (started in the kernel) and an unreachable URL, each rendered with
its uPlot charts and tables; publishes from the kernel show up in the remote monitor's counters,
and hovering a chart shows a point's value and time.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests._support.net import free_port

from . import cells
from .conftest import GatewayProcess, Users, copy_to_docs

DARK = "JupyterLab Dark"
LIGHT = "JupyterLab Light"
_SET_THEME = "(theme) => window.jupyterapp.commands.execute('apputils:change-theme', {theme})"

# An uptime as the table shows it (formatDuration): "12.5 s", "4 min 05 s", "3 h 07 min", "2 d 05 h".
UPTIME = re.compile(r"^(\d+(\.\d)? s|\d+ min \d\d s|\d+ h \d\d min|\d+ d \d\d h)$")


def _monitors(remote_url: str, dead_port: int) -> str:
    return (
        "from rtwidgets import Gateway, GatewayMonitor\n"
        "from rtwidgets.models.channel import Channel\n"
        "\n"
        f"remote = GatewayMonitor({remote_url!r}, interval=0.5, window=10)\n"
        "embedded_gw = Gateway(port=0).start()\n"
        "embedded = GatewayMonitor(embedded_gw, interval=0.5, window=60)\n"
        f"dead = GatewayMonitor('http://127.0.0.1:{dead_port}/metrics', interval=0.5)\n"
        "display(remote, embedded, dead)"
    )


def _publish(count: int) -> str:
    return (
        "room = Channel(conn, 'monitor-room').wait_subscribed()\n"
        f"for i in range({count}):\n"
        "    room.publish({'i': i})"
    )


def test_gateway_monitor_renders_remote_embedded_and_unreachable(
    users: Users, gateway: GatewayProcess, test_name: str
) -> None:
    token_file = users.token_file("alice", gateway.token("alice"))
    dead_port = free_port()
    notebook = users.notebook(
        "gateway-monitor",
        [cells.connect(gateway.url, token_file), _monitors(gateway.url, dead_port), _publish(20)],
    )
    (alice,) = users.open(("alice", notebook))
    monitors = alice.page.locator(".rtw-widget.rtw-gateway_monitor")
    expect(monitors).to_have_count(3)
    remote, embedded, dead = monitors.nth(0), monitors.nth(1), monitors.nth(2)

    # The remote gateway, read through its /metrics: ok, charts drawn, the kernel's connection.
    expect(remote).to_have_attribute("data-status", "ok")
    expect(remote.locator(".rtw-gm-source")).to_have_text(f"http://127.0.0.1:{gateway.port}/metrics")
    # 10 s of history at 0.5 s: wait until the charts span most of their width (not a timing check).
    expect(remote).to_have_attribute("data-points", re.compile(r"^(1[6-9]|[2-9]\d|\d{3,})$"))
    expect(remote.locator('.rtw-gm-chart[data-series="connections"] path')).to_have_attribute(
        "d", re.compile(r"^M")
    )
    current = remote.locator(".rtw-gm-current")
    expect(current.locator('tr[data-key="connections"] td')).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(current.locator('tr[data-key="messages_published"] td')).to_have_text(
        re.compile(r"^([2-9]\d|\d{3,})$")  # the 20 publishes from the kernel (and other tests')
    )
    # Its uptime, from the rtwidgets_gateway_start_time_seconds it exports, as a duration.
    expect(current.locator('tr[data-key="uptime"] td')).to_have_text(UPTIME)
    expect(remote.locator(".rtw-gm-error")).to_be_hidden()
    expect(remote.locator(".rtw-gm-chart")).to_have_count(8)
    # In a browser each card is a small uPlot chart; hovering one shows a point's value and time.
    expect(remote).to_have_attribute("data-charts", "uplot")
    expect(remote.locator(".rtw-gm-chart .uplot canvas")).to_have_count(8)
    card = remote.locator('.rtw-gm-chart[data-series="connections"]')
    card.locator(".u-over").hover()
    expect(card.locator(".rtw-gm-chart-value")).to_have_text(re.compile(r"^\d+ at \d\d:\d\d:\d\d$"))
    alice.page.mouse.move(0, 0)
    expect(card.locator(".rtw-gm-chart-value")).to_have_text(re.compile(r"^\d+$"))

    # The embedded gateway, read with stats(): its uptime is known too.
    expect(embedded).to_have_attribute("data-status", "ok")
    expect(embedded.locator(".rtw-gm-source")).to_have_text(re.compile(r"^embedded gateway ws://127\.0\.0\.1:\d+$"))
    expect(embedded.locator('.rtw-gm-current tr[data-key="uptime"] td')).to_have_text(UPTIME)

    # Nobody listens there: a clear error, shown, and retried.
    expect(dead).to_have_attribute("data-status", "error")
    banner = dead.locator(".rtw-gm-error")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(f"http://127.0.0.1:{dead_port}/metrics: unreachable")
    expect(banner).to_contain_text("retrying every 0.5 s")

    shot = alice.screenshot(test_name, "gateway_monitor", remote)
    copy_to_docs(shot, "gateway_monitor.png")
    alice.screenshot(test_name, "gateway_monitor-unreachable", dead)

    # The dark theme: the charts take their colours from the theme at the next sample.
    page = alice.page
    try:
        page.evaluate(_SET_THEME, DARK)
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
        newest = remote.get_attribute("data-newest")
        expect(remote).not_to_have_attribute("data-newest", newest or "")
        copy_to_docs(alice.screenshot(test_name, "gateway_monitor-dark", remote), "gateway_monitor_dark.png")
    finally:
        # The theme is a server-side setting: later tests expect the light one.
        page.evaluate(_SET_THEME, LIGHT)
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'")
