"""deploy/grafana and the alert rules: the dashboard's PromQL parses, the ConfigMap carries it
for Grafana's sidecar, every alert links its runbook, and Prometheus' own promtool checks and
unit-tests the rules (Debian's `prometheus` package; `.ci/run` installs it).

Which metrics the dashboard and the rules may name is checked against a running pod in
test_deploy_rehearsal (what the gateway and the sync sidecar really export).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_render import (
    DEPLOY,
    by_kind,
    dashboard_queries,
    promql_metric_names,
    render_all,
)

DASHBOARD = DEPLOY / "grafana" / "stageserve-dashboard.json"
RULES = DEPLOY / "prometheus" / "stageserve-rules.yaml"
RUNBOOK = DEPLOY / "README.md"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _rules() -> list[dict[str, Any]]:
    plain = yaml.safe_load(RULES.read_text())
    return [r for g in plain["groups"] for r in g["rules"]]


def test_every_dashboard_query_is_valid_promql_reading_stageserve_metrics(
    dashboard: dict[str, Any],
) -> None:
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 15
    for title, exprs in queries.items():
        for expr in exprs:
            try:
                names = promql_metric_names(expr)
            except ValueError as exc:
                pytest.fail(f"panel {title!r}: {exc}\n{expr}")
            assert names and all(n.startswith("stageserve_") for n in names), (title, names)


def test_the_metric_name_walker_finds_names_inside_every_kind_of_expression() -> None:
    # The rehearsal's "only exported metrics" check is only as good as this walk.
    expr = (
        "histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) / ignoring(x) -b"
        ' + max_over_time(c[5m:1m]) + topk(3, d) + (e offset 5m) + count_values("v", f)'
    )
    assert promql_metric_names(expr) == {"a_bucket", "b", "c", "d", "e", "f"}


def test_the_dashboard_covers_what_operators_ask_about(dashboard: dict[str, Any]) -> None:
    read = {
        t: set().union(*map(promql_metric_names, q))
        for t, q in dashboard_queries(dashboard).items()
    }
    everything = set().union(*read.values())
    needed = {
        "traffic": "stageserve_requests_total",
        "latency by version": "stageserve_request_duration_seconds_bucket",
        "swaps": "stageserve_stage_activations_total",
        "load failures": "stageserve_model_load_failures_total",
        "assigned but not serving": "stageserve_stage_loaded",
        "sync health": "stageserve_sync_last_success_timestamp_seconds",
        "sync errors": "stageserve_sync_model_errors",
        "shadow differences": "stageserve_shadow_abs_diff_bucket",
        "audit write failures": "stageserve_audit_write_failures_total",
    }
    assert not {k: m for k, m in needed.items() if m not in everything}
    latency = [
        t for t, names in read.items() if "stageserve_request_duration_seconds_bucket" in names
    ]
    assert any("version" in q for t in latency for q in dashboard_queries(dashboard)[t])
    errors = dashboard_queries(dashboard)["Responses by status code"]
    assert any("by (model, stage, status)" in q for q in errors)


def test_the_dashboard_imports_as_is_with_a_datasource_variable_and_a_tidy_grid(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["uid"] == "stageserve" and dashboard["title"]
    assert "__inputs" not in dashboard, "the sidecar cannot fill import-time inputs"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["description"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]


def test_the_prod_overlay_ships_the_dashboard_as_a_configmap_for_grafanas_sidecar() -> None:
    docs = render_all()["overlays/prod"]
    (cm,) = [
        m
        for m in by_kind(docs, "ConfigMap")
        if m["metadata"]["name"].startswith("stageserve-grafana")
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["stageserve-dashboard.json"]) == json.loads(DASHBOARD.read_text())


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for line in markdown.splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_every_alert_links_a_runbook_entry_that_exists_in_deploy_readme() -> None:
    anchors = _anchors(RUNBOOK.read_text())
    for rule in _rules():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://") and "/deploy/README.md#" in url, rule["alert"]
        anchor = url.rsplit("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"{rule['alert']}: no '### {rule['alert']}' in deploy/README.md"


def test_the_rules_alert_on_a_missing_target_and_on_assigned_but_not_serving() -> None:
    by_name = {r["alert"]: r for r in _rules()}
    assert "stageserve_stage_loaded" in promql_metric_names(
        by_name["StageserveAssignedNotServing"]["expr"]
    )
    assert promql_metric_names(by_name["StageserveTargetDown"]["expr"]) == {"up"}
    assert by_name["StageserveMetricsAbsent"]["expr"].startswith("absent(up{")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not found: `apt-get install prometheus` (.ci/run does)")
    return found


def test_promtool_accepts_the_rule_file() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


def _rendered(text: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), text)


def _expected(alert: str, labels: dict[str, str]) -> dict[str, Any]:
    rule = {r["alert"]: r for r in _rules()}[alert]
    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {k: _rendered(v, labels) for k, v in rule["annotations"].items()},
    }


def test_promtool_unit_tests_fire_the_new_alerts_on_series_that_should_fire_them(
    tmp_path: Path,
) -> None:
    stage = {"namespace": "stageserve-prod", "model": "cost", "stage": "prod"}
    target = {"job": "stageserve", "namespace": "stageserve-prod", "pod": "p-1", "endpoint": "http"}
    series = ",".join(f'{k}="{v}"' for k, v in target.items())
    suite = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # pod a serves the assigned version, pod b has not for 15 minutes
                    {
                        "series": 'stageserve_stage_loaded{namespace="stageserve-prod",'
                        'pod="a",model="cost",stage="prod"}',
                        "values": "1x30",
                    },
                    {
                        "series": 'stageserve_stage_loaded{namespace="stageserve-prod",'
                        'pod="b",model="cost",stage="prod"}',
                        "values": "1x4 0x25",
                    },
                    {"series": f"up{{{series}}}", "values": "1x4 0x25"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "StageserveAssignedNotServing",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "StageserveAssignedNotServing",
                        "exp_alerts": [_expected("StageserveAssignedNotServing", stage)],
                    },
                    {"eval_time": "7m", "alertname": "StageserveTargetDown", "exp_alerts": []},
                    {
                        "eval_time": "12m",
                        "alertname": "StageserveTargetDown",
                        "exp_alerts": [_expected("StageserveTargetDown", target)],
                    },
                    {"eval_time": "20m", "alertname": "StageserveMetricsAbsent", "exp_alerts": []},
                ],
            },
            {
                "interval": "1m",
                "input_series": [{"series": 'up{job="other"}', "values": "1x20"}],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "StageserveMetricsAbsent",
                        "exp_alerts": [_expected("StageserveMetricsAbsent", {"job": "stageserve"})],
                    }
                ],
            },
        ],
    }
    path = tmp_path / "stageserve-rules.test.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    done = subprocess.run(
        [_promtool(), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
