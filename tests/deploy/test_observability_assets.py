"""The Grafana dashboard and the Prometheus alert rules in deploy/: well-formed, and every metric
and label they query exists in a real scrape of a gateway that has served known traffic.

promtool is not available here, so expressions are checked for what breaks silently in
production: a metric or label name that does not exist (the panel stays empty, the alert never
fires), unbalanced brackets, Grafana variables in alert rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, ROOT, app_client, fake_deployment, make_config

DASHBOARD = ROOT / "deploy" / "grafana" / "switchyard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ADDED_BY_PROMETHEUS = {"le", "instance", "job", "quantile"}
_METRIC = re.compile(r"\bswitchyard_[a-z0-9_]+\b")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")
_LABEL_IN_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_ALERT_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    return yaml.safe_load(ALERTS.read_text())


@pytest.fixture(scope="module")
async def scraped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """``{sample name: label names}`` from /metrics of a gateway after a fallback, a stream, a
    refusal and spend against a budget: every family the dashboard shows has samples."""
    tmp = tmp_path_factory.mktemp("scrape")
    broken, good = FakeUpstream("broken"), FakeUpstream("good")
    await broken.start()
    await good.start()
    broken.mode = "error-500"
    prices = {"input_per_mtok": 1, "output_per_mtok": 2}
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp}/ledger.db",
            "ledger": {"spool_dir": str(tmp / "spool"), "flush_interval_ms": 10},
            "deployments": [
                fake_deployment("first", broken.base_url, pricing=prices),
                fake_deployment("second", good.base_url, pricing=prices),
            ],
            "routes": [
                {
                    "name": "auto",
                    "candidates": ["first", "second"],
                    "rules": [{"name": "private", "when": {"sensitivity": ["restricted"]}, "prefer": ["second"]}],
                }
            ],
            "projects": [{"name": "team", "budget": {"usd": 20}}],
            "retries": {"max_attempts_per_deployment": 1},
        }
    )
    try:
        async with app_client(config) as client:
            sdk = openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=client, max_retries=0)
            await sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hello"}])
            stream = await sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], stream=True)
            [chunk async for chunk in stream]
            await client.post(
                "/v1/chat/completions", json={"model": "auto", "messages": []}, headers={"authorization": "Bearer sk-no"}
            )
            await client.app.state.gateway.ledger.flush()
            text = (await client.get("/metrics")).text
    finally:
        await broken.stop()
        await good.stop()
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def _check_expression(expr: str, scraped: dict[str, set[str]], where: str) -> set[str]:
    """The labels the expression's result can carry; fails on unknown metrics or labels."""
    for opening, closing in ("()", "{}", "[]"):
        assert expr.count(opening) == expr.count(closing), f"{where}: unbalanced {opening}{closing}"
    metrics = set(_METRIC.findall(expr))
    assert metrics, f"{where}: queries no switchyard metric"
    unknown = metrics - scraped.keys()
    assert not unknown, f"{where}: {sorted(unknown)} not in a scrape of a running gateway"
    available = set().union(*(scraped[m] for m in metrics)) | ADDED_BY_PROMETHEUS
    used = {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    for matcher in _MATCHER.findall(expr):
        used |= set(_LABEL_IN_MATCHER.findall(matcher))
    assert used <= available, f"{where}: labels {sorted(used - available)} are on none of {sorted(metrics)}"
    grouped = [g for g in re.findall(r"\bby\s*\(([^)]*)\)", expr)]
    return {label.strip() for g in grouped for label in g.split(",") if label.strip()} if grouped else available


# ------------------------------------------------------------------------------ Grafana


def test_the_dashboard_is_a_well_formed_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"]
    assert dashboard["title"] == "Switchyard"
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert 0 < grid["w"] <= 24 - grid["x"], panel["title"]
        assert grid["h"] > 0, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "bargauge", "state-timeline"}, panel["type"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        assert all(t["datasource"] == panel["datasource"] and t["expr"].strip() for t in panel["targets"])


def test_every_dashboard_query_names_metrics_and_labels_a_running_gateway_exposes(
    dashboard: dict[str, Any], scraped: dict[str, set[str]]
) -> None:
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r}"
            labels = _check_expression(target["expr"], scraped, where)
            legend = set(_LEGEND_LABEL.findall(target.get("legendFormat", "")))
            assert legend <= labels, f"{where}: legend {sorted(legend - labels)} not in the result's labels"
            queried |= set(_METRIC.findall(target["expr"]))
    wanted = {  # what the dashboard is for: traffic, latency, TTFT, errors, fallbacks, spend, breakers, ledger
        "switchyard_requests_total",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_time_to_first_token_seconds_bucket",
        "switchyard_output_tokens_per_second_bucket",
        "switchyard_refusals_total",
        "switchyard_fallbacks_total",
        "switchyard_cost_usd_total",
        "switchyard_budget_remaining_usd",
        "switchyard_circuit_open",
        "switchyard_ledger_queue_depth",
        "switchyard_ledger_spool_segments",
        "switchyard_routing_decisions_total",
    }
    assert wanted <= queried, sorted(wanted - queried)
    spend = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "switchyard_cost_usd_total" in t["expr"]]
    assert any("by (project)" in e for e in spend)
    assert any("by (deployment)" in e for e in spend)


# ------------------------------------------------------------------------------ Prometheus


def test_the_alert_rules_are_well_formed(rules: dict[str, Any]) -> None:
    assert set(rules) == {"groups"}
    assert rules["groups"]
    names = [g["name"] for g in rules["groups"]]
    assert len(names) == len(set(names))
    alerts = []
    for group in rules["groups"]:
        assert set(group) <= {"name", "interval", "rules"}, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            assert re.fullmatch(r"Switchyard[A-Z][A-Za-z]+", rule["alert"])
            assert isinstance(rule["expr"], str)
            assert "$__" not in rule["expr"]
            assert "$" not in rule["expr"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["description"]
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))


def test_every_alert_names_metrics_and_labels_a_running_gateway_exposes(
    rules: dict[str, Any], scraped: dict[str, set[str]]
) -> None:
    covered = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            labels = _check_expression(rule["expr"], scraped, rule["alert"])
            text = " ".join(rule["annotations"].values())
            referenced = set(_ALERT_LABEL.findall(text))
            assert referenced <= labels, f"{rule['alert']}: annotations use {sorted(referenced - labels)}, not on the result"
            covered[rule["alert"]] = rule["expr"]
    exprs = list(covered.values())
    assert any("switchyard_budget_remaining_usd" in e for e in exprs)  # budget near exhaustion
    assert any('switchyard_requests_total{status=~"5.."}' in e for e in exprs)  # error rate
    assert any("switchyard_circuit_open" in e for e in exprs)  # a breaker open
    assert any("switchyard_ledger_spool_segments" in e for e in exprs)  # ledger spool growing


def test_the_deploy_assets_sit_where_the_provisioning_looks(dashboard: dict[str, Any]) -> None:
    """Grafana loads every JSON under deploy/grafana/; Prometheus loads deploy/prometheus/alerts*.yml."""
    assert DASHBOARD.parent == ROOT / "deploy" / "grafana"
    assert DASHBOARD.suffix == ".json"
    assert ALERTS.name.startswith("alerts")
    assert ALERTS.suffix == ".yml"
    assert isinstance(Path(ALERTS).read_text(), str)
