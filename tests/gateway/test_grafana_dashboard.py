"""The Grafana dashboard ``docs/grafana/rtwidgets-gateway.json`` against the metrics a real gateway
exposes at ``/metrics``: every exposed metric is in some panel's query (the dashboard cannot go
stale silently when a metric is added), every metric a query names is exposed (or Prometheus'
own ``up``), and the model is importable: Prometheus through a data-source variable, unique
panel ids, a grid position for each panel.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtwidgets.gateway import Gateway
from rtwidgets.sync_client import connect

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "rtwidgets-gateway.json"
# Series Prometheus makes itself for every scrape target (not exported by the gateway).
PROMETHEUS_SERIES = frozenset({"up"})
# PromQL words that are neither metrics nor functions (functions are followed by "(").
PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
)
DS_VARIABLE = "${datasource}"


def _exposed_metrics() -> set[str]:
    """The metric names (as queried: counters with ``_total``) of a real gateway's /metrics."""
    gw = Gateway(port=0).start()
    try:
        with connect(gw.url, token=gw.token("alice", publish=["*"])) as conn:
            conn.subscribe("room").publish({"n": 1})  # every family has a sample, errors aside
        url = "http://" + gw.url.removeprefix("ws://") + "/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        gw.stop()
    # "# TYPE <name> <type>": the exposed names, also of a family without samples (errors by code).
    names = set(re.findall(r"^# TYPE (\S+) \S+$", text, flags=re.MULTILINE))
    assert names, f"no metrics in {text!r}"
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, also those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions, keywords and $variables left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors ([5m], [$__rate_interval])
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_KEYWORDS:
            continue  # a function call or a keyword
        names.add(match.group())
    return names


def test_metric_names_parser() -> None:
    expr = 'sum by (code) (rate(rtwidgets_errors_total{job=~"$job", code!="x y"}[$__rate_interval]))'
    assert metric_names(expr) == {"rtwidgets_errors_total"}
    assert metric_names("sum(a_total) / sum(b{x='1'}) and on (i) up") == {"a_total", "b", "up"}
    assert metric_names("histogram_quantile(0.9, rate(x_bucket[5m]))") == {"x_bucket"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_every_exposed_metric_is_in_a_panel_and_every_query_is_exposed(dashboard: dict[str, Any]) -> None:
    exposed = _exposed_metrics()
    queries = _queries(dashboard)
    assert queries, "the dashboard has no queries"
    queried: set[str] = set()
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"panel {title!r}: query {expr!r} names no metric"
        unknown = names - exposed - PROMETHEUS_SERIES
        assert not unknown, f"panel {title!r}: {sorted(unknown)} not exposed by the gateway (stale query?)"
        queried |= names
    missing = exposed - queried
    assert not missing, f"exposed by the gateway but in no panel of {DASHBOARD.name}: {sorted(missing)}"


def test_dashboard_uses_a_prometheus_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DS_VARIABLE}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DS_VARIABLE, panel["title"]
            # Every query is narrowed to the chosen gateways.
            assert 'job=~"$job"' in target["expr"] and 'instance=~"$instance"' in target["expr"], target
    for name in ("job", "instance"):
        assert variables[name]["datasource"]["uid"] == DS_VARIABLE


def test_dashboard_model_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "rtwidgets-gateway"
    assert dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]
    # Panels on one grid row do not overlap.
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {panel['title']!r} overlaps another at {(x, y)}"
                cells.add((x, y))
