"""The Grafana dashboard (grafana/sgflow-dashboard.json) asks only for what the service
really exports: every query is parsed as PromQL, and every metric, label matcher and
grouping label in it is looked up in a real ``/metrics`` scrape of the real API, after a real
run on the real engine."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.stack import Stack

DASHBOARD = Path(__file__).parents[2] / "grafana" / "sgflow-dashboard.json"
# labels Prometheus adds at scrape time, and the histogram's bucket label
TARGET_LABELS = {"job", "instance"}
# Grafana's variables, as Grafana replaces them before Prometheus sees a query
VARIABLES = {"$__rate_interval": "1m", "$job": ".*"}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _expanded(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


def _walk(node: Any, selectors: list[Any], groupings: list[list[str]]) -> None:
    """Every vector selector and every aggregation's ``by`` labels under ``node``."""
    kind = type(node).__name__
    if kind == "VectorSelector":
        selectors.append(node)
    elif kind == "MatrixSelector":
        selectors.append(node.vector_selector)
    elif kind == "AggregateExpr":
        if node.modifier is not None and "By" in str(node.modifier.type):
            groupings.append(list(node.modifier.labels))
        _walk(node.expr, selectors, groupings)
    elif kind == "BinaryExpr":
        _walk(node.lhs, selectors, groupings)
        _walk(node.rhs, selectors, groupings)
    elif kind == "Call":
        for arg in node.args:
            _walk(arg, selectors, groupings)
    elif kind in ("ParenExpr", "UnaryExpr", "SubqueryExpr"):
        _walk(node.expr, selectors, groupings)


def test_the_dashboard_is_a_well_formed_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


@pytest.fixture(scope="module")
def exported(stack: Stack) -> dict[str, set[str]]:
    """Each sample name of a real scrape, with its label names; after a finished run, so
    the step histogram and the engine's cache ratio have something to say."""
    answer = stack.acme.post(
        "/v1/runs",
        json={
            "program": {
                "program": "scraped",
                "steps": [{"id": "a", "user": "Say hi.", "gen": {"max_tokens": 4}}],
            }
        },
    )
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["id"]
    deadline = time.monotonic() + 300
    while stack.acme.get(f"/v1/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    text = stack.acme.get("/metrics").text
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def _problems(expr: str, exported: dict[str, set[str]]) -> tuple[list[str], set[str]]:
    """What in ``expr`` the scrape does not have (metrics, matched or grouping labels), and
    the metrics it uses. Raises if Prometheus would refuse to parse it."""
    ast = promql_parser.parse(_expanded(expr))
    selectors: list[Any] = []
    groupings: list[list[str]] = []
    _walk(ast, selectors, groupings)
    problems = [] if selectors else ["no metric"]
    labels_here: set[str] = set(TARGET_LABELS)
    for selector in selectors:
        if selector.name not in exported:
            problems.append(f"{selector.name} is not exported")
            continue
        have = exported[selector.name] | TARGET_LABELS
        problems += [
            f"{selector.name} has no label {m.name}"
            for m in selector.matchers.matchers
            if m.name not in have
        ]
        labels_here |= have
    problems += [f"grouping by {labels}" for labels in groupings if not set(labels) <= labels_here]
    return problems, {s.name for s in selectors}


def test_every_query_parses_and_asks_only_for_exported_metrics_and_labels(
    exported: dict[str, set[str]],
) -> None:
    queries = _queries(_dashboard())
    assert len(queries) >= 10
    used: set[str] = set()
    for title, expr in queries:
        problems, names = _problems(expr, exported)
        assert not problems, f"{title}: {problems} in {expr}"
        used |= names
    # the dashboard shows every sgflow metric family (but the old latency sum)
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported if n.startswith("sgflow_")}
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert families - shown <= {"sgflow_step_latency_seconds_total"}, families - shown


@pytest.mark.parametrize(
    "expr",
    [
        "rate(sgflow_runs_finish_total[1m])",  # a misspelt metric
        'sgflow_engine_up{model="x"}',  # a label the metric does not have
        "max by (model) (sgflow_engine_up)",  # grouping by one
    ],
)
def test_a_query_for_what_is_not_exported_is_caught(
    expr: str, exported: dict[str, set[str]]
) -> None:
    problems, _ = _problems(expr, exported)
    assert problems, expr
