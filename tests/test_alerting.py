"""Alert rules, indicators and the persisted state machine, with a controllable clock."""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from controlplane.alerting.engine import evaluate, step
from controlplane.alerting.models import AlertEvent, AlertState
from controlplane.alerting.rules import RulesError, load_rules, parse_rules
from controlplane.cli import main
from controlplane.extensions import db
from tests.conftest import POSTAL_DOWN, serve_traffic

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
SHIPPED = {"HighErrorRate", "HighLatencyP95", "DatabaseConnectionsHigh", "ConnectionPoolSaturated", "BackupMissing",
           "RestoreDrillFailed", "DeploymentFailed", "MigrationFailed", "DeliveryBacklog", "PostalUnreachable",
           "NoLiveWorker", "NoLeader", "ErrorBudgetBurnFast", "ErrorBudgetBurnSlow", "StatusNotificationsBehind",
           "AlertRuleFailing"}


def rule_doc(**overrides) -> dict:
    rule = {"name": "Test", "indicator": "http_error_ratio", "params": {"window": "5m"}, "op": ">",
            "threshold": 0.1, "for": "2m", "labels": {"severity": "critical"},
            "annotations": {"summary": "ratio {value:.0%}"}}
    rule.update(overrides)
    return {"rules": [rule]}


def one_rule(**overrides):
    return parse_rules(rule_doc(**overrides)).rules[0]


def test_the_shipped_rules_are_valid_and_complete():
    rules = load_rules(ROOT / "alerts" / "rules.yaml")
    assert {r.name for r in rules.rules} == SHIPPED
    fast = rules.get("ErrorBudgetBurnFast")
    assert fast.threshold == 14.4 and fast.params["long_window_seconds"] == 3600
    assert rules.get("HighErrorRate").annotations["runbook_url"] == "docs/runbooks.md#high-error-rate"
    assert rules.get("HighLatencyP95").params["seconds"] == 2.0


@pytest.mark.parametrize("override,message", [
    ({"indicator": "nope"}, "rule 'Test'.indicator: 'nope' is not one of"),
    ({"op": "=="}, "rule 'Test'.op: must be one of"),
    ({"threshold": "high"}, "rule 'Test'.threshold: must be a number"),
    ({"for": "soon"}, "rule 'Test'.for: 'soon' is not a duration"),
    ({"labels": {"severity": "urgent"}}, "rule 'Test'.labels.severity: must be one of"),
    ({"no_data": "maybe"}, "rule 'Test'.no_data: must be one of ok, alerting, keep"),
    ({"params": {"window": "5m", "colour": "red"}}, "rule 'Test'.params: unknown parameter(s) colour"),
    ({"resolve_threshold": 0.2}, "rule 'Test'.resolve_threshold: must lie on the healthy side"),
    ({"annotations": {}}, "rule 'Test'.annotations.summary: required"),
    ({"extra": 1}, "rule 'Test': unknown field(s) extra"),
    ({"name": "9lives"}, "name: must start with a letter"),
])
def test_validation_errors_name_the_rule_and_the_field(override, message):
    with pytest.raises(RulesError) as error:
        parse_rules(rule_doc(**override))
    assert message in str(error.value)


def test_pending_then_firing_after_for_then_resolved():
    rule, state = one_rule(), AlertState(rule="Test", labels_key="{}", state="inactive")
    assert step(rule, state, 0.5, T0) == "pending"
    assert step(rule, state, 0.5, T0 + timedelta(seconds=60)) is None
    assert step(rule, state, 0.5, T0 + timedelta(seconds=120)) == "firing"
    assert step(rule, state, 0.5, T0 + timedelta(seconds=135)) is None
    assert step(rule, state, 0.0, T0 + timedelta(seconds=150)) == "resolved" and state.state == "inactive"


def test_flapping_below_for_never_fires():
    rule, state = one_rule(), AlertState(rule="Test", labels_key="{}", state="inactive")
    seen = [step(rule, state, 0.5 if i % 2 == 0 else 0.0, T0 + timedelta(seconds=15 * i)) for i in range(20)]
    assert "firing" not in seen and set(seen) == {"pending", "cleared"}


def test_hysteresis_keeps_firing_between_the_thresholds():
    rule = one_rule(threshold=0.1, resolve_threshold=0.05, **{"for": "0s"})
    state = AlertState(rule="Test", labels_key="{}", state="inactive")
    assert step(rule, state, 0.2, T0) == "firing"
    assert step(rule, state, 0.07, T0 + timedelta(seconds=15)) is None and state.state == "firing"
    assert step(rule, state, 0.04, T0 + timedelta(seconds=30)) == "resolved"


def test_keep_firing_for_outlasts_a_short_dip():
    rule = one_rule(keep_firing_for="1m", **{"for": "0s"})
    state = AlertState(rule="Test", labels_key="{}", state="inactive")
    assert step(rule, state, 0.5, T0) == "firing"
    assert step(rule, state, 0.0, T0 + timedelta(seconds=30)) is None
    assert step(rule, state, 0.0, T0 + timedelta(seconds=61)) == "resolved"


@pytest.mark.parametrize("policy,expected", [("ok", "cleared"), ("alerting", "firing"), ("keep", None)])
def test_no_data_follows_the_rule(policy, expected):
    rule = one_rule(no_data=policy)
    state = AlertState(rule="Test", labels_key="{}", state="inactive")
    step(rule, state, 0.5, T0)  # pending
    assert step(rule, state, None, T0 + timedelta(minutes=3)) == expected


def test_real_5xx_traffic_fires_then_resolves_and_a_restart_keeps_for_progress(make_app, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule_doc(
        name="HighErrorRate", params={"window": "5m", "min_requests": 10}, threshold=0.01, **{"for": "30s"})))
    app = make_app(ALERT_RULES_FILE=str(rules_file), **POSTAL_DOWN)
    serve_traffic(app, ok=21, failing=5)
    recorder = app.extensions["controlplane.request_stats"]
    settings = app.extensions["controlplane.settings"]
    now = datetime.now(timezone.utc)
    with app.app_context():
        recorder.flush()
        rules = app.extensions["controlplane.alert_rules"]
        assert [t.name for t in evaluate(settings, rules, now)] == ["pending"]
    # A restart (a new app, a new leader) in the middle of `for`: the state is in the database.
    restarted = make_app(ALERT_RULES_FILE=str(rules_file), migrate=False,
                         DATABASE_URL=settings.database_url)
    with restarted.app_context():
        rules = restarted.extensions["controlplane.alert_rules"]
        assert [t.name for t in evaluate(settings, rules, now + timedelta(seconds=31))] == ["firing"]
        assert evaluate(settings, rules, now + timedelta(seconds=46)) == []  # fires once, not every time
        # Five minutes later the errors have left the window and too little traffic remains: resolved.
        assert [t.name for t in evaluate(settings, rules, now + timedelta(minutes=6))] == ["resolved"]
        history = [e.transition for e in db.session.execute(select(AlertEvent).order_by(AlertEvent.id)).scalars()]
        assert history == ["pending", "firing", "resolved"]


def test_every_shipped_rule_evaluates_on_a_fresh_database(app):
    with app.app_context():
        transitions = evaluate(app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"])
        states = {s.rule: s.state for s in db.session.execute(select(AlertState)).scalars()}
    assert set(states) == SHIPPED
    # A new install: no backup and no worker yet is not late yet (see test_alert_quiet_start.py).
    assert transitions == []


def test_cli_validates_lists_and_shows_history(make_app, base_env, tmp_path):
    app = make_app()
    with app.app_context():
        evaluate(app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"])
    runner = CliRunner()
    assert "16 rules valid" in runner.invoke(main, ["alerts", "validate"], env=base_env).output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(rule_doc(op="!")))
    result = runner.invoke(main, ["alerts", "validate", str(bad)], env=base_env)
    assert result.exit_code == 1 and "rule 'Test'.op" in result.output
    listed = json.loads(runner.invoke(main, ["alerts", "list", "--json"], env=base_env).stdout)
    assert {r["rule"]: r["state"] for r in listed}["BackupMissing"] == "inactive"
    with app.app_context():  # a day and more after the install without a full backup
        evaluate(app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"],
                 datetime.now(timezone.utc) + timedelta(hours=28))
    listed = json.loads(runner.invoke(main, ["alerts", "list", "--json"], env=base_env).stdout)
    assert {r["rule"]: r["state"] for r in listed}["BackupMissing"] == "firing"
    assert "BackupMissing" in runner.invoke(main, ["alerts", "history"], env=base_env).output


def test_a_broken_rules_file_stops_start_up_with_its_error(base_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(rule_doc(threshold="x")))
    result = CliRunner().invoke(main, ["keys", "list"], env={**base_env, "ALERT_RULES_FILE": str(bad)})
    assert result.exit_code == 2 and "rule 'Test'.threshold: must be a number" in result.output


def test_the_committed_prometheus_export_is_current_and_equivalent():
    from controlplane.alerting.export import render

    rules = load_rules(ROOT / "alerts" / "rules.yaml")
    committed = (ROOT / "alerts" / "prometheus" / "controlplane.rules.yml").read_text()
    assert committed == render(rules, 15), "stale: run `controlplane alerts export` and commit the result"
    exported = {r["alert"]: r for r in yaml.safe_load(committed)["groups"][0]["rules"]}
    assert set(exported) == SHIPPED
    for rule in rules.rules:
        mine = exported[rule.name]
        assert f"{rule.op} {rule.threshold:g}" in mine["expr"]
        assert mine["labels"] == rule.labels
        assert mine.get("for", "0s") in (f"{rule.for_seconds}s", f"{rule.for_seconds // 60}m",
                                         f"{rule.for_seconds // 3600}h")
        if rule.params.get("window"):
            assert f"[{rule.params['window']}]" in mine["expr"]


def test_promtool_checks_and_unit_tests_pass_when_installed():
    import shutil
    import subprocess

    if shutil.which("promtool") is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    folder = ROOT / "alerts" / "prometheus"
    check = subprocess.run(["promtool", "check", "rules", str(folder / "controlplane.rules.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = sorted(str(p) for p in (folder / "tests").glob("*.yml"))
    unit = subprocess.run(["promtool", "test", "rules", *tests], capture_output=True, text=True, cwd=folder / "tests")
    assert unit.returncode == 0, unit.stdout + unit.stderr


class MissingTable:
    """A test indicator that reads a table a failed migration never created, until it exists."""

    name = "reads_missing_table"
    params: dict = {}

    def __init__(self):
        self.table = "no_such_table"

    def validate(self, params):
        return params

    def measure(self, params, ctx):
        return float(db.session.execute(text(f"SELECT count(*) FROM {self.table}")).scalar_one())


def isolation_rules(tmp_path) -> Path:
    path = tmp_path / "rules.yaml"
    fires = {"op": ">", "threshold": 0, "for": "0s", "labels": {"severity": "critical"}}
    path.write_text(yaml.safe_dump({"rules": [
        {"name": "MigrationFailed", "indicator": "deployment_failed", "params": {"kind": "migration"},
         "annotations": {"summary": "The newest database migration failed"}, **fires},
        {"name": "DeploymentFailed", "indicator": "deployment_failed", "params": {"kind": "deploy"},
         "annotations": {"summary": "The newest deployment failed"}, **fires},
        {"name": "ReadsMissingTable", "indicator": "reads_missing_table", "op": ">", "threshold": 100, "for": "0s",
         "labels": {"severity": "warning"}, "annotations": {"summary": "{value:.0f} rows"}},
        {"name": "AlertRuleFailing", "indicator": "rules_in_error", "op": ">", "threshold": 0, "for": "0s",
         "labels": {"severity": "error"}, "annotations": {"summary": "{value:.0f} alert rule(s) cannot be evaluated"}},
    ]}))
    return path


def test_a_raising_indicator_fails_only_its_rule_and_every_other_rule_still_pages(make_app, base_env, tmp_path,
                                                                                 monkeypatch):
    from controlplane.alerting.deployments import record_deployment
    from controlplane.alerting.indicators import INDICATORS
    from controlplane.alerting.models import AlertNotification

    broken = MissingTable()
    monkeypatch.setitem(INDICATORS, broken.name, broken)
    app = make_app(ALERT_RULES_FILE=str(isolation_rules(tmp_path)), PAGERDUTY_ROUTING_KEY="k" * 32)
    settings, rules = app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"]
    with app.app_context():
        record_deployment(settings, "migration", "failed", version="0020", detail="relation does not exist")
        record_deployment(settings, "deploy", "failed", version="1.2.3")
        evaluate(settings, rules, T0)
        evaluate(settings, rules, T0 + timedelta(seconds=15))
        states = {s.rule: s for s in db.session.execute(select(AlertState)).scalars()}
        paged = sorted(n.rule for n in db.session.execute(select(AlertNotification)).scalars())
    # Every rule that holds fired, was stored and paged, although a rule after them raised.
    assert states["MigrationFailed"].state == "firing" and states["DeploymentFailed"].state == "firing"
    assert paged == ["AlertRuleFailing", "DeploymentFailed", "MigrationFailed"]
    # The broken rule is in an explicit error state with the reason, and AlertRuleFailing pages about it.
    assert states["ReadsMissingTable"].error is not None and "no_such_table" in states["ReadsMissingTable"].error
    assert states["AlertRuleFailing"].state == "firing" and states["AlertRuleFailing"].last_value == 1.0
    client = app.test_client()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'controlplane_alert_rule_errors_total{rule="ReadsMissingTable"} 2.0' in metrics
    assert 'controlplane_alert_rule_errors_total{rule="MigrationFailed"}' in metrics  # a series from the start
    assert "controlplane_alert_rules_in_error 1.0" in metrics
    listed = {row["rule"]: row for row in alerts_listing(app, client)}
    assert listed["ReadsMissingTable"]["state"] == "error" and "no_such_table" in listed["ReadsMissingTable"]["error"]
    assert listed["MigrationFailed"]["state"] == "firing" and listed["MigrationFailed"]["error"] is None
    listing = CliRunner().invoke(main, ["alerts", "list"], env={**base_env, "ALERT_RULES_FILE": str(tmp_path / "rules.yaml")})
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    broken_line = next(i for i, line in enumerate(lines) if line.startswith("ReadsMissingTable"))
    assert lines[broken_line].split()[2] == "error" and "cannot be evaluated: " in lines[broken_line + 1]

    # The table appears (the migration is fixed): the error clears and AlertRuleFailing resolves.
    broken.table = "deployments"
    with app.app_context():
        names = {(t.rule.name, t.name) for t in evaluate(settings, rules, T0 + timedelta(seconds=30))}
        state = db.session.execute(select(AlertState).where(AlertState.rule == "ReadsMissingTable")).scalar_one()
        assert state.error is None and state.error_since is None and state.last_value == 2.0
    assert ("AlertRuleFailing", "resolved") in names
    assert {row["rule"]: row for row in alerts_listing(app, client)}["ReadsMissingTable"]["state"] == "inactive"
    assert "controlplane_alert_rules_in_error 0.0" in client.get("/metrics").get_data(as_text=True)


def alerts_listing(app, client) -> list[dict]:
    from tests.conftest import create_api_key

    _, key = create_api_key(app, "read")
    answer = client.get("/api/v1/alerts", headers={"X-Server-API-Key": key})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()["data"]


class OthersWriteMeanwhile:
    """A test indicator during whose measurement another connection writes and commits, as the
    web's request flusher or a heartbeat does while the leader evaluates."""

    name = "others_write_meanwhile"
    params: dict = {}

    def __init__(self):
        self.other = None  # the other connection's engine, once the app (and its database) exists
        self.thread: threading.Thread | None = None

    def validate(self, params):
        return params

    def write(self) -> None:
        with self.other.begin() as conn:
            conn.execute(text("INSERT INTO other_writes (n) VALUES (1)"))

    def measure(self, params, ctx):
        db.session.execute(text("SELECT count(*) FROM other_writes"))  # indicators read first
        self.thread = threading.Thread(target=self.write)
        self.thread.start()
        self.thread.join(timeout=1)  # done at once, unless the pass holds the write lock
        return 1.0


def test_a_pass_still_writes_when_another_connection_commits_while_it_measures(make_app, tmp_path, monkeypatch):
    """On SQLite a transaction that has read cannot write once another connection has committed
    ("database is locked" at once); `controlplane run` met it on nearly every pass."""
    from controlplane.alerting.indicators import INDICATORS

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [
        {"name": "Busy", "indicator": "others_write_meanwhile", "op": ">", "threshold": 0, "for": "0s",
         "labels": {"severity": "warning"}, "annotations": {"summary": "{value:.0f}"}},
        {"name": "DeploymentFailed", "indicator": "deployment_failed", "params": {"kind": "deploy"}, "op": ">",
         "threshold": 0, "for": "0s", "labels": {"severity": "warning"}, "annotations": {"summary": "failed"}}]}))
    busy = OthersWriteMeanwhile()
    monkeypatch.setitem(INDICATORS, busy.name, busy)
    app = make_app(ALERT_RULES_FILE=str(rules))
    busy.other = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    with app.app_context():
        db.session.execute(text("CREATE TABLE other_writes (n INTEGER)"))
        db.session.commit()
        evaluate(app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"])
        busy.thread.join(timeout=20)
        states = {s.rule: s for s in db.session.execute(select(AlertState)).scalars()}
        written = db.session.execute(text("SELECT count(*) FROM other_writes")).scalar_one()
    busy.other.dispose()
    assert {name: (state.state, state.error) for name, state in states.items()} == {
        "Busy": ("firing", None), "DeploymentFailed": ("inactive", None)}
    assert written == 1  # the other writer waited its turn and then wrote


def test_no_shipped_rule_ever_prints_nan_without_data():
    rules = load_rules(ROOT / "alerts" / "rules.yaml")
    for rule in rules.rules:
        for key, template in rule.annotations.items():
            for value in (None, float("nan")):
                text = rule.render(key, value)
                assert "nan" not in text.lower().replace("maintenance", ""), (rule.name, key, text)
                assert ("no data" in text) == ("{value" in template), (rule.name, key, text)
    assert rules.get("HighErrorRate").render("summary", None) == "HTTP 5xx ratio no data over 5m (threshold 1%)"


def test_a_rule_removed_from_the_file_while_in_error_no_longer_counts(app):
    with app.app_context():
        db.session.add(AlertState(rule="RemovedRule", labels_key="{}", state="inactive", error="OperationalError: x"))
        db.session.commit()
        evaluate(app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"])
        failing = db.session.execute(select(AlertState).where(AlertState.rule == "AlertRuleFailing")).scalar_one()
    assert failing.state == "inactive" and failing.last_value == 0.0


def test_an_indicator_that_measures_nan_is_no_data(make_app, tmp_path, monkeypatch):
    from controlplane.alerting.indicators import INDICATORS

    class NotANumber(MissingTable):
        name = "not_a_number"

        def measure(self, params, ctx):
            return float("nan")

    monkeypatch.setitem(INDICATORS, NotANumber.name, NotANumber())
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule_doc(indicator="not_a_number", params={}, no_data="alerting",
                                                  **{"for": "0s"})))
    app = make_app(ALERT_RULES_FILE=str(rules_file))
    with app.app_context():
        (fired,) = evaluate(app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"], T0)
        event = db.session.execute(select(AlertEvent)).scalar_one()
    assert fired.name == "firing" and fired.value is None
    assert event.detail == "ratio no data" and event.value is None
