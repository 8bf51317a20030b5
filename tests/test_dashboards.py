"""Dashboards and exported rules: current, parseable PromQL, and only metrics the app exports."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "rate", "increase", "irate", "by", "without", "on", "and",
                "or", "unless", "time", "absent", "histogram_quantile", "le", "offset", "bool", "ignoring", "group_left",
                "group_right", "topk", "bottomk", "clamp_min", "clamp_max"}


def _build_module():
    spec = importlib.util.spec_from_file_location("dashboards_build", ROOT / "dashboards" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_expressions() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            exprs += [target["expr"] for target in panel["targets"]]
    return exprs


def rule_expressions() -> list[str]:
    document = yaml.safe_load((ROOT / "alerts" / "prometheus" / "controlplane.rules.yml").read_text())
    return [rule["expr"] for rule in document["groups"][0]["rules"]]


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    grouping = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", without_ranges):
        grouping |= {g.strip() for g in group.split(",")}
    return {t for t in tokens if t not in PROMQL_WORDS and t not in grouping and not re.fullmatch(r"\d.*", t)}


def test_dashboards_are_what_build_py_makes_with_fixed_uids_and_a_datasource_variable():
    build = _build_module()
    assert {p.name for p in DASHBOARDS} == set(build.BUILDERS)
    uids = set()
    for path in DASHBOARDS:
        assert path.read_text() == build.render(build.BUILDERS[path.name]), f"{path.name} is stale: run build.py"
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        assert board["templating"]["list"][0]["name"] == "datasource"
        assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])
    assert len(uids) == len(DASHBOARDS)


def test_every_promql_expression_parses():
    if shutil.which("promtool") is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    exprs = dashboard_expressions() + rule_expressions()
    document = {"groups": [{"name": "parse", "rules": [{"record": f"parse:expr{i}", "expr": e}
                                                       for i, e in enumerate(exprs)]}]}
    checked = subprocess.run(["promtool", "check", "rules", "/dev/stdin"], input=yaml.safe_dump(document),
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_metric_named_exists_in_the_running_apps_metrics(client):
    client.get("/live")
    exposed = client.get("/metrics").get_data(as_text=True)
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", exposed, re.M))
    known = set()
    for name, kind in names:
        known.add(name)
        if kind == "histogram":
            known |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        if kind == "counter":
            known.add(f"{name}_total" if not name.endswith("_total") else name)
    missing = {}
    for expr in dashboard_expressions() + rule_expressions():
        unknown = metric_names(expr) - known
        if unknown:
            missing[expr] = sorted(unknown)
    assert not missing, missing
