"""``rtwidgets_gateway_start_time_seconds``: a real gateway's ``/metrics``, scraped over HTTP, has
the unix time it started listening (a gauge, as Prometheus' ``process_start_time_seconds``); a
stop and a start of the same gateway moves it, and ``stats()`` carries the same value."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from rtwidgets.gateway import Gateway
from rtwidgets.gateway.metrics import GatewayMetrics
from tests._support.net import free_port

NAME = "rtwidgets_gateway_start_time_seconds"


def _scrape_start_time(gw: Gateway) -> tuple[str, float]:
    """(the family's type, its value) from the gateway's real /metrics over HTTP."""
    url = "http://" + gw.url.removeprefix("ws://") + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == NAME:
            (sample,) = family.samples
            assert sample.name == NAME and sample.labels == {}
            return family.type, float(sample.value)
    raise AssertionError(f"{NAME} not in /metrics:\n{text}")


def test_metrics_export_the_start_time_and_a_restart_moves_it() -> None:
    gw = Gateway(port=free_port())
    assert gw.stats()["start_time"] is None  # not started yet
    before = time.time()
    gw.start()
    try:
        after = time.time()
        kind, first = _scrape_start_time(gw)
        assert kind == "gauge"
        assert before <= first <= after
        assert gw.stats()["start_time"] == first
        gw.stop()
        restarted_at = time.time()
        gw.start()  # the same gateway, its counters kept: only the start time tells the restart
        _, second = _scrape_start_time(gw)
        assert second >= restarted_at > first - 1e-9
        assert second != first
        assert gw.stats()["start_time"] == second
    finally:
        gw.stop()


def test_no_start_time_before_the_gateway_started() -> None:
    metrics = GatewayMetrics(lambda: {}, wall_clock=lambda: 1_700_000_000.25)
    assert NAME.encode() not in metrics.render()
    assert metrics.snapshot()["start_time"] is None
    metrics.started()
    assert f"{NAME} 1.70000000025e+09".encode() in metrics.render()
    assert metrics.snapshot()["start_time"] == 1_700_000_000.25
