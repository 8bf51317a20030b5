"""PagerDuty notifications through the `pagerduty` package, asserted at its transport: payloads,
429 / 5xx / 400 / network failures, resolve repeats, the per-key rate limit, and end to end."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import httpx2
import pytest
import yaml
from sqlalchemy import create_engine, select, text

from controlplane.alerting.engine import Transition, evaluate
from controlplane.alerting.models import AlertNotification
from controlplane.alerting.notifications import enqueue, send_due
from controlplane.alerting.pagerduty import PagerDutySender, dedup_key
from controlplane.alerting.rules import parse_rules
from controlplane.extensions import db
from controlplane.timeutil import as_utc
from tests.conftest import POSTAL_DOWN, new_key, serve_traffic

KEY = "a" * 32
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


class PagerDutyDouble:
    """Answers like the Events API v2 (202 + dedup_key), or as told: a status, or a network error."""

    def __init__(self):
        self.events: list[dict] = []
        self.answers: list = []
        self.respond = None  # else a function of the event: a status, or (status, headers)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        answer = self.answers.pop(0) if self.answers else 202
        if isinstance(answer, Exception):
            raise answer
        event = json.loads(request.content)
        if self.respond is not None:
            answer = self.respond(event)
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        self.events.append({"url": str(request.url), "status": status, **event})
        if status == 202:
            return httpx2.Response(202, json={"status": "success", "message": "Event processed",
                                              "dedup_key": event.get("dedup_key")})
        return httpx2.Response(status, headers=headers,
                               json={"status": "invalid event", "message": "Event object is invalid"})

    def accepted(self) -> list[dict]:
        return [event for event in self.events if event["status"] == 202]

    def sender(self) -> PagerDutySender:
        return PagerDutySender("https://events.pagerduty.com", transport=httpx2.MockTransport(self))

    def attach(self, app):
        """The app's one PagerDuty sender, answering through this double."""
        app.extensions["controlplane.pagerduty"] = self.sender()
        return app


@pytest.fixture
def pd():
    return PagerDutyDouble()


def rule(**overrides):
    doc = {"name": "HighErrorRate", "indicator": "http_error_ratio", "params": {"window": "5m"}, "op": ">",
           "threshold": 0.01, "for": "2m", "labels": {"severity": "critical", "team": "platform"},
           "annotations": {"summary": "5xx ratio {value:.1%}", "description": "too many errors",
                           "runbook_url": "https://runbooks.example/high-error-rate"}, "status_component": "api"}
    doc.update(overrides)
    return parse_rules({"rules": [doc]}).rules[0]


def pd_app(make_app, pd, **env):
    return pd.attach(make_app(PAGERDUTY_ROUTING_KEY=KEY, GRAFANA_URL="https://grafana.example", **env))


def queue(app, name="firing", value=0.2, at=NOW, the_rule=None):
    with app.app_context():
        rows = enqueue(Transition(the_rule or rule(), "{}", name, value, at), app.extensions["controlplane.settings"])
        db.session.commit()
        return rows[0].id if rows else None


def run(app, at=NOW) -> int:
    with app.app_context():
        return send_due(app.extensions["controlplane.settings"], at)


def notification(app, row_id) -> AlertNotification:
    with app.app_context():
        db.session.remove()
        return db.session.get(AlertNotification, row_id)


def test_a_trigger_carries_what_on_call_needs(make_app, pd):
    app = pd_app(make_app, pd)
    row_id = queue(app)
    assert run(app) == 1
    (event,) = pd.events
    assert event["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert event["routing_key"] == KEY and event["event_action"] == "trigger"
    assert event["dedup_key"] == dedup_key("HighErrorRate", "{}")
    payload = event["payload"]
    assert payload["summary"] == "5xx ratio 20.0%" and payload["severity"] == "critical"
    assert payload["timestamp"] == NOW.isoformat() and payload["source"]
    assert (payload["component"], payload["group"], payload["class"]) == ("api", "platform", "http_error_ratio")
    details = payload["custom_details"]
    assert details["observed_value"] == 0.2 and details["threshold"] == 0.01 and details["window"] == "5m"
    assert details["runbook_url"] == "https://runbooks.example/high-error-rate"
    assert details["grafana_url"].startswith("https://grafana.example/d/")
    assert {link["text"] for link in event["links"]} == {"Runbook", "Grafana"}
    assert notification(app, row_id).state == "sent"


def test_the_dedup_key_survives_config_edits():
    assert dedup_key("HighErrorRate", "{}") == dedup_key("HighErrorRate", "{}")
    assert dedup_key("HighErrorRate", "{}") != dedup_key("HighLatencyP95", "{}")
    assert len(dedup_key("X" * 63, "{}")) <= 255


@pytest.mark.parametrize("failure", [429, 500, 503, httpx2.ConnectError("connection refused")])
def test_429_5xx_and_network_errors_are_retried_later_without_blocking(make_app, pd, failure):
    app = pd_app(make_app, pd)
    row_id = queue(app)
    pd.answers = [failure]
    assert run(app) == 1
    row = notification(app, row_id)
    assert row.state == "pending" and row.attempts == 1 and as_utc(row.next_attempt_at) > NOW and row.last_error
    assert run(app) == 0  # not due yet: nothing is sent twice in a run
    assert run(app, at=NOW + timedelta(minutes=1)) == 1
    assert notification(app, row_id).state == "sent"


def test_a_400_is_recorded_and_never_retried(make_app, pd):
    app = pd_app(make_app, pd)
    row_id = queue(app)
    pd.answers = [400]
    run(app)
    row = notification(app, row_id)
    assert row.state == "failed" and "refused" in row.last_error
    assert run(app, at=NOW + timedelta(hours=1)) == 0 and len(pd.events) == 1


def test_resolves_are_sent_again_a_few_times(make_app, pd):
    app = pd_app(make_app, pd)
    queue(app, "resolved", value=0.0)
    for minute in range(5):
        run(app, at=NOW + timedelta(minutes=minute))
    assert [e["event_action"] for e in pd.events] == ["resolve"] * 3
    assert all("payload" not in e for e in pd.events)


def test_at_most_120_events_a_minute_per_routing_key(make_app, pd):
    app = pd_app(make_app, pd)
    for _ in range(125):
        queue(app)
    with app.app_context():
        settings = app.extensions["controlplane.settings"]
        while send_due(settings, NOW):
            pass
    assert len(pd.events) == 120
    run(app, at=NOW + timedelta(seconds=61))
    assert len(pd.events) == 125


def drain(app, at) -> None:
    """What the notifier job does at `at`: send until nothing is due."""
    with app.app_context():
        settings = app.extensions["controlplane.settings"]
        while send_due(settings, at):
            pass


def burst(app, count: int, severity: str = "critical") -> None:
    for n in range(count):
        queue(app, the_rule=rule(name=f"Burst{n:03d}", labels={"severity": severity}))


def most_in_a_minute(times: list[datetime]) -> int:
    times, most, start = sorted(times), 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= timedelta(minutes=1):
            start += 1
        most = max(most, end - start + 1)
    return most


def test_a_429_pauses_the_whole_route_instead_of_trying_every_page(make_app, pd):
    app = pd_app(make_app, pd)
    burst(app, 125)
    pd.respond = lambda event: 429
    drain(app, NOW)
    assert len(pd.events) == 1  # PagerDuty counts a throttled request too: one, not 125
    drain(app, NOW + timedelta(seconds=29))
    assert len(pd.events) == 1
    with app.app_context():
        rows = db.session.execute(select(AlertNotification)).scalars().all()
    assert {row.state for row in rows} == {"pending"} and sum(row.attempts for row in rows) == 1
    assert min(as_utc(row.next_attempt_at) for row in rows) >= NOW + timedelta(seconds=30)


def test_a_429_pauses_the_route_for_its_retry_after(make_app, pd):
    app = pd_app(make_app, pd)
    burst(app, 3)
    pd.respond = lambda event: (429, {"Retry-After": "120"})
    drain(app, NOW)
    pd.respond = None
    drain(app, NOW + timedelta(seconds=119))
    assert len(pd.events) == 1
    drain(app, NOW + timedelta(seconds=121))
    assert len(pd.accepted()) == 3


def test_retry_after_is_read_as_seconds_or_an_http_date():
    from email.utils import format_datetime

    from controlplane.alerting.pagerduty import retry_after_seconds

    assert retry_after_seconds("7") == 7 and retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    in_a_minute = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    assert 55 <= retry_after_seconds(in_a_minute) <= 60


def test_an_outage_of_429_then_5xx_stays_within_120_requests_a_minute_and_every_page_goes_out_once(make_app, pd):
    """The fault suite's PagerDuty outage on a simulated clock: 429 for 30 s, 5xx for 30 s."""
    app = pd_app(make_app, pd)
    burst(app, 125)
    clock = {"now": NOW}
    sent_at: list[datetime] = []

    def outage(event):
        sent_at.append(clock["now"])
        elapsed = clock["now"] - NOW
        return 429 if elapsed < timedelta(seconds=30) else 503 if elapsed < timedelta(seconds=60) else 202

    pd.respond = outage
    for second in range(0, 600, 2):  # the notifier runs often; 10 minutes is more than enough
        clock["now"] = NOW + timedelta(seconds=second)
        drain(app, clock["now"])
    assert most_in_a_minute(sent_at) <= 120
    accepted = [event["dedup_key"] for event in pd.accepted()]
    assert len(accepted) == len(set(accepted)) == 125
    with app.app_context():
        states = db.session.execute(select(AlertNotification.state)).scalars().all()
    assert set(states) == {"sent"}


def test_instances_sharing_the_database_share_the_minute_failures_included(make_app, pd):
    first = pd_app(make_app, pd)
    burst(first, 125)
    pd.respond = lambda event: 500
    drain(first, NOW)
    assert len(pd.events) == 120
    second = pd_app(make_app, pd)  # another worker on the same database
    pd.respond = None
    drain(second, NOW + timedelta(seconds=30))  # due again by their backoff, but the minute is spent
    assert len(pd.events) == 120
    drain(second, NOW + timedelta(seconds=61))
    assert len(pd.events) == 240  # a new minute: 120 more
    drain(first, NOW + timedelta(seconds=122))
    assert len(pd.accepted()) == 125


def test_a_throttled_route_holds_neither_another_route_nor_another_channel(make_app, pd):
    app = pd.attach(make_app(PAGERDUTY_ROUTING_KEY=KEY, PAGERDUTY_ROUTING_KEY_WARNING="w" * 32,
                             ALERT_EMAIL_TO="oncall@example.com"))
    burst(app, 60, severity="warning")  # more than one batch: they must not crowd out the others
    queue(app, the_rule=rule(name="Critical"))
    pd.respond = lambda event: 429 if event["routing_key"] == "w" * 32 else 202
    drain(app, NOW)
    throttled = [event for event in pd.events if event["routing_key"] == "w" * 32]
    assert len(throttled) == 1
    assert [event["dedup_key"] for event in pd.accepted()] == [dedup_key("Critical", "{}")]
    with app.app_context():
        emails = db.session.execute(select(AlertNotification.state).filter_by(channel="email")).scalars().all()
    assert len(emails) == 61 and set(emails) == {"sent"}


@pytest.mark.postgres
def test_a_route_another_notifier_is_spending_is_put_off_not_waited_for(make_app, pd, postgres_url):
    app = pd.attach(make_app(DATABASE_URL=postgres_url, PAGERDUTY_ROUTING_KEY=KEY,
                             PAGERDUTY_ROUTING_KEY_WARNING="w" * 32))
    queue(app, the_rule=rule(name="Warning", labels={"severity": "warning"}))
    queue(app, the_rule=rule(name="Critical"))
    other_notifier = create_engine(postgres_url)
    try:
        with other_notifier.connect() as connection:
            connection.execute(text("INSERT INTO alert_routes (channel, route) VALUES ('pagerduty', 'warning')"))
            connection.commit()
            connection.execute(text("SELECT * FROM alert_routes WHERE route = 'warning' FOR UPDATE"))
            drain(app, NOW)  # it must not wait for the other notifier's commit
            assert [event["dedup_key"] for event in pd.events] == [dedup_key("Critical", "{}")]
            connection.rollback()
    finally:
        other_notifier.dispose()
    drain(app, NOW + timedelta(seconds=5))
    assert [event["dedup_key"] for event in pd.accepted()][1:] == [dedup_key("Warning", "{}")]


def test_severity_routes_and_an_unconfigured_pagerduty_is_an_explicit_no_op(make_app, pd):
    app = pd.attach(make_app(PAGERDUTY_ROUTING_KEY=KEY, PAGERDUTY_ROUTING_KEY_WARNING="w" * 32))
    queue(app, the_rule=rule(labels={"severity": "warning"}))
    run(app)
    assert pd.events[0]["routing_key"] == "w" * 32
    quiet = make_app()
    assert queue(quiet) is None
    assert "pagerduty_routes" in quiet.extensions["controlplane.settings"].describe()
    assert quiet.extensions["controlplane.settings"].describe()["pagerduty_routes"] == "unset"


def test_real_5xx_traffic_pages_then_resolves(make_app, pd, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"rules": [{
        "name": "HighErrorRate", "indicator": "http_error_ratio", "params": {"window": "5m", "min_requests": 10},
        "op": ">", "threshold": 0.01, "for": "30s", "labels": {"severity": "critical"},
        "annotations": {"summary": "5xx ratio {value:.0%}"}}]}))
    app = pd_app(make_app, pd, ALERT_RULES_FILE=str(rules_file), **POSTAL_DOWN)
    serve_traffic(app, ok=21, failing=5)
    settings, rules = app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"]
    start = datetime.now(timezone.utc)
    with app.app_context():
        app.extensions["controlplane.request_stats"].flush()
        for seconds in (0, 15, 30, 45):  # the leader's 15 s cadence
            evaluate(settings, rules, start + timedelta(seconds=seconds))
            send_due(settings, start + timedelta(seconds=seconds))
        assert [e["event_action"] for e in pd.events] == ["trigger"]
        assert pd.events[0]["payload"]["summary"] == "5xx ratio 19%"  # 5 of 26 requests
        # The errors stop (and age out of the window): resolved, and the resolve reaches PagerDuty.
        later = start + timedelta(minutes=6)
        evaluate(settings, rules, later)
        send_due(settings, later)
        assert [e["event_action"] for e in pd.events] == ["trigger", "resolve"]
        assert pd.events[0]["dedup_key"] == pd.events[1]["dedup_key"]
        states = db.session.execute(select(AlertNotification.action, AlertNotification.state)).all()
        assert ("trigger", "sent") in states


def test_deployments_record_failures_for_the_rules_and_send_successes_as_change_events(make_app, pd):
    app = pd_app(make_app, pd)
    client = app.test_client()
    headers = {"X-Server-API-Key": new_key(app, "admin")}
    started = client.post("/api/v1/deployments", json={"version": "1.4.0", "commit": "abc123"}, headers=headers)
    assert started.status_code == 201 and started.get_json()["data"]["status"] == "started"
    deployment_id = started.get_json()["data"]["id"]
    done = client.post("/api/v1/deployments", json={"id": deployment_id, "status": "succeeded"}, headers=headers)
    assert done.status_code == 200 and done.get_json()["data"]["version"] == "1.4.0"
    run(app, at=datetime.now(timezone.utc) + timedelta(seconds=1))
    (change,) = pd.events
    assert change["url"].endswith("/v2/change/enqueue") and change["payload"]["summary"] == "Deployed 1.4.0"
    # A failed deploy fires DeploymentFailed on the next evaluation; nothing else about it pages.
    client.post("/api/v1/deployments", json={"version": "1.4.1", "status": "failed", "detail": "health check"},
                headers=headers)
    with app.app_context():
        transitions = evaluate(app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"])
    assert "DeploymentFailed" in {t.rule.name for t in transitions if t.name == "firing"}
    for bad, message in (({"status": "finished"}, "status must be one of"), ({"kind": "party"}, "kind must be one of"),
                         ({"id": 999, "status": "failed"}, "no deploy with id 999"),
                         ({"id": deployment_id, "status": "failed"}, "already succeeded")):
        answer = client.post("/api/v1/deployments", json=bad, headers=headers)
        assert answer.status_code == 422 and message in answer.get_json()["data"]["message"]
    sender_key = {"X-Server-API-Key": new_key(app, "send")}
    assert client.post("/api/v1/deployments", json={}, headers=sender_key).status_code == 403


def test_db_upgrade_records_the_migration(make_app, base_env):
    from click.testing import CliRunner

    from controlplane.alerting.models import Deployment
    from controlplane.cli import main

    result = CliRunner().invoke(main, ["db", "upgrade"], env=base_env)
    assert result.exit_code == 0, result.output
    app = make_app(migrate=False)
    with app.app_context():
        rows = db.session.execute(select(Deployment)).scalars().all()
    assert [(r.kind, r.status) for r in rows] == [("migration", "succeeded")]
    from tests.test_migrations import HEAD

    assert rows[0].version == HEAD


def test_silences_and_maintenance_suppress_pages_but_not_state(make_app, pd):
    from controlplane.alerting.silences import create_silence

    app = pd_app(make_app, pd)
    with app.app_context():
        create_silence({"alertname": "HighErrorRate"}, NOW - timedelta(minutes=1), NOW + timedelta(hours=1),
                       "ops", "known incident")
    assert queue(app) is None  # silenced: no page
    assert queue(app, the_rule=rule(name="Other")) is not None  # other rules still page
    assert queue(app, "resolved") is not None  # resolves always go out
    assert queue(app, at=NOW + timedelta(hours=2)) is not None  # the silence has ended
    with app.app_context():
        create_silence({}, NOW + timedelta(hours=3), NOW + timedelta(hours=4), "ops", "upgrade", kind="maintenance")
    assert queue(app, the_rule=rule(name="Other"), at=NOW + timedelta(hours=3, minutes=5)) is None


def test_silence_api_and_cli(make_app, base_env):
    from click.testing import CliRunner

    from controlplane.cli import main

    app = make_app()
    client = app.test_client()
    admin = {"X-Server-API-Key": new_key(app, "admin")}
    created = client.post("/api/v1/silences", json={"matchers": {"alertname": "BackupMissing"}, "duration": "2h",
                                                     "comment": "restoring the bucket"}, headers=admin)
    assert created.status_code == 201 and created.get_json()["data"]["active"] is True
    silence_id = created.get_json()["data"]["id"]
    for bad in ({"matchers": {}, "duration": "1h", "comment": "x"}, {"matchers": {"a": "b"}, "duration": "90d",
                                                                     "comment": "x"},
                {"matchers": {"a": "b"}, "duration": "1h"}, {"matchers": ["x"], "duration": "1h", "comment": "x"}):
        assert client.post("/api/v1/silences", json=bad, headers=admin).status_code == 422
    assert client.delete(f"/api/v1/silences/{silence_id}", headers=admin).get_json()["data"]["active"] is False
    assert client.delete("/api/v1/silences/999", headers=admin).status_code == 404
    reader = {"X-Server-API-Key": new_key(app, "read")}
    assert client.post("/api/v1/silences", json={}, headers=reader).status_code == 403
    assert len(client.get("/api/v1/silences", headers=reader).get_json()["data"]) == 1
    assert {a["rule"] for a in client.get("/api/v1/alerts", headers=reader).get_json()["data"]} >= {"HighErrorRate"}
    runner = CliRunner()
    made = runner.invoke(main, ["alerts", "silence", "create", "--match", "severity=warning", "--duration", "30m",
                                "--author", "me", "--comment", "noisy"], env=base_env)
    assert made.exit_code == 0 and "until" in made.output
    assert "severity" in runner.invoke(main, ["alerts", "silence", "list"], env=base_env).output
    assert runner.invoke(main, ["alerts", "silence", "expire", "2"], env=base_env).exit_code == 0
    bad = runner.invoke(main, ["alerts", "silence", "create", "--match", "oops", "--author", "a", "--comment", "c"],
                        env=base_env)
    assert bad.exit_code == 2 and "label=value" in bad.output


def test_long_firing_alerts_page_again_after_the_repeat_interval(make_app, pd, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"rules": [{
        "name": "NoLiveWorker", "indicator": "live_workers", "params": {"startup_grace": "0s"}, "op": "<",
        "threshold": 1, "for": "0s",
        "labels": {"severity": "critical"}, "annotations": {"summary": "no worker"}}]}))
    app = pd_app(make_app, pd, ALERT_RULES_FILE=str(rules_file), ALERT_REPEAT_SECONDS="3600")
    settings, rules = app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"]
    # After the install's start-up grace (live_workers does not judge a new install's first minutes).
    start = datetime.now(timezone.utc) + timedelta(hours=1)
    with app.app_context():
        for minutes in (0, 30, 61, 90, 122):
            evaluate(settings, rules, start + timedelta(minutes=minutes))
        actions = db.session.execute(select(AlertNotification.action, AlertNotification.created_at)
                                     .order_by(AlertNotification.id)).all()
    assert [a for a, _ in actions] == ["trigger", "trigger", "trigger"]
    assert [as_utc(at) - start for _, at in actions] == [timedelta(0), timedelta(minutes=61), timedelta(minutes=122)]


def test_alerts_test_sends_a_test_page(make_app, base_env, monkeypatch, pd):
    from click.testing import CliRunner

    from controlplane import clikit
    from controlplane.cli import main

    make_app()
    build_app = clikit.build_app  # the command's app gets this double as its PagerDuty sender
    monkeypatch.setattr(clikit, "build_app", lambda **kwargs: pd.attach(build_app(**kwargs)))
    env = {**base_env, "PAGERDUTY_ROUTING_KEY": KEY}
    result = CliRunner().invoke(main, ["alerts", "test", "BackupMissing"], env=env)
    assert result.exit_code == 0, result.output
    assert pd.events[0]["payload"]["summary"].startswith("[TEST] BackupMissing")
    assert CliRunner().invoke(main, ["alerts", "test", "Nope"], env=env).exit_code == 1
    unconfigured = CliRunner().invoke(main, ["alerts", "test", "BackupMissing"], env=base_env)
    assert unconfigured.exit_code == 1 and "PAGERDUTY_ROUTING_KEY" in unconfigured.output


def test_the_signed_webhook_channel(make_app, pd):
    import hashlib
    import hmac

    from tests.doubles.receiver import Receiver

    receiver = Receiver()
    try:
        app = make_app(ALERT_WEBHOOK_URL=receiver.url, ALERT_WEBHOOK_SECRET="s3cret", WEBHOOK_ALLOW_PRIVATE_TARGETS="true")
        queue(app)
        run(app)
        (hit,) = receiver.received
        document = json.loads(hit["body"])
        assert document["type"] == "alert.trigger" and document["rule"] == "HighErrorRate"
        assert document["payload"]["custom_details"]["observed_value"] == 0.2
        expected = "sha256=" + hmac.new(b"s3cret", hit["body"], hashlib.sha256).hexdigest()
        assert hit["headers"]["X-MailGoat-Signature"] == expected and hit["headers"]["X-MailGoat-Timestamp"]
        receiver.status = 503  # retried later; a 404 would be recorded as permanent
        row_id = queue(app, "resolved")
        run(app)
        assert notification(app, row_id).state == "pending"
        receiver.status = 404
        run(app, at=NOW + timedelta(hours=1))
        assert notification(app, row_id).state == "failed"
    finally:
        receiver.stop()


def test_the_email_channel_goes_through_our_gateway(make_app, pd):
    from controlplane.gateway.models import Message

    app = make_app(ALERT_EMAIL_TO="oncall@example.com, lead@example.com", ALERT_EMAIL_FROM="alerts@mailgoat.dev")
    row_id = queue(app)
    run(app)
    assert notification(app, row_id).state == "sent"
    with app.app_context():
        (message,) = db.session.execute(select(Message)).scalars().all()
        params = json.loads(message.params)
        assert params["to"] == ["oncall@example.com", "lead@example.com"] and message.tag == "alert"
        assert message.subject.startswith("[FIRING] HighErrorRate: 5xx ratio 20.0%")
        assert message.state == "queued"  # the worker delivers it like any other message


def test_a_refused_alert_email_undoes_nothing_else_in_its_batch(make_app, pd):
    """The gateway refusing an alert email (more recipients than Postal takes) fails that
    notification only: the page sent before it in the same batch stays sent, once."""
    from controlplane.alerting.channels import SYSTEM_KEY_NAME
    from controlplane.gateway.keys import system_key
    from controlplane.gateway.models import Message
    from controlplane.gateway.sending import MAX_ADDRESSES

    everyone = ", ".join(f"oncall{n}@example.com" for n in range(MAX_ADDRESSES + 1))
    app = pd_app(make_app, pd, ALERT_EMAIL_TO=everyone)
    queue(app)
    with app.app_context():
        rows = db.session.execute(select(AlertNotification).order_by(AlertNotification.id)).scalars().all()
        channels = {row.id: row.channel for row in rows}
        for row in rows:  # the page first, then the email, in one batch
            row.next_attempt_at = NOW + timedelta(seconds=1 if row.channel == "email" else 0)
        system_key(app.extensions["controlplane.settings"], SYSTEM_KEY_NAME, "system:alerting")  # as after a first email
        db.session.commit()
    assert sorted(channels.values()) == ["email", "pagerduty"]
    run(app, NOW + timedelta(seconds=1))
    run(app, NOW + timedelta(minutes=10))
    assert len(pd.events) == 1
    states = {channels[row_id]: notification(app, row_id) for row_id in channels}
    assert states["pagerduty"].state == "sent"
    assert states["email"].state == "failed" and "the gateway refused the alert email" in states["email"].last_error
    with app.app_context():
        assert db.session.execute(select(Message)).scalars().all() == []


def test_the_email_channel_falls_back_to_smtp_when_postal_is_not_usable(make_app, pd):
    from controlplane.health.models import CheckResult
    from tests.doubles.smtp import SmtpDouble

    smtp = SmtpDouble()
    try:
        app = make_app(ALERT_EMAIL_TO="oncall@example.com", SMTP_HOST=smtp.host)
        with app.app_context():
            db.session.add(CheckResult(check_name="postal", status="unhealthy", duration_ms=1,
                                       checked_at=datetime.now(timezone.utc), instance="x"))
            db.session.commit()
        app.extensions["controlplane.health"].cache.refresh()
        queue(app)
        run(app)
        (mail,) = smtp.messages
        assert mail["to"] == ["oncall@example.com"]
        assert mail["message"]["Subject"].startswith("[FIRING] HighErrorRate")
    finally:
        smtp.stop()


HTTP_EVENTS_URL = {"PAGERDUTY_ROUTING_KEY": KEY, "PAGERDUTY_EVENTS_URL": "http://events.pagerduty.example"}


def test_alerts_test_with_an_http_events_url_is_one_line_and_exit_1(make_app, base_env):
    from click.testing import CliRunner

    from controlplane.cli import main

    make_app()
    result = CliRunner().invoke(main, ["alerts", "test", "BackupMissing"], env={**base_env, **HTTP_EVENTS_URL})
    assert result.exit_code == 1
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: channel pagerduty: PAGERDUTY_EVENTS_URL must be an https:// URL, "
                      "got 'http://events.pagerduty.example'"]


def test_alerts_test_names_an_unreachable_smtp_host_and_a_webhook_that_is_not_https(make_app, base_env):
    from click.testing import CliRunner

    from controlplane.cli import main

    make_app()
    env = {**base_env, "PAGERDUTY_ROUTING_KEY": KEY, "ALERT_EMAIL_TO": "oncall@example.com",
           "SMTP_HOST": "127.0.0.1:9", "ALERT_WEBHOOK_URL": "http://hooks.example/alerts"}
    result = CliRunner().invoke(main, ["alerts", "test", "BackupMissing"], env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "channel webhook: ALERT_WEBHOOK_URL must be an https:// URL" in error
    assert "channel email: SMTP_HOST 127.0.0.1:9 is unreachable" in error


def test_a_rule_without_a_routing_key_is_reported_and_the_other_rules_still_page(make_app, pd):
    app = pd.attach(make_app(PAGERDUTY_ROUTING_KEY_CRITICAL=KEY))  # no default: warning rules route nowhere
    problem = app.extensions["controlplane.channel_problems"]["pagerduty"]
    assert problem.startswith("no routing key for rule(s) ") and "PAGERDUTY_ROUTING_KEY" in problem
    assert "HighErrorRate" not in problem.split(":")[0]  # critical: it has its key
    row_id = queue(app)
    run(app)
    assert notification(app, row_id).state == "sent" and pd.events[0]["routing_key"] == KEY


def test_the_notify_job_holds_pages_for_a_misconfigured_channel_and_says_so_once(make_app, pd, caplog):
    from controlplane.jobs import Worker, _notify_alerts

    app = pd.attach(make_app(**HTTP_EVENTS_URL))
    row_id = queue(app)
    worker = Worker(app)
    try:
        with caplog.at_level("ERROR", logger="controlplane.alerting"):
            for _ in range(3):  # the job runs every 5 s: it must neither raise nor log each time
                with app.app_context():
                    _notify_alerts(worker)
    finally:
        worker.leader.release()
    held = notification(app, row_id)
    assert held.state == "pending" and held.attempts == 0
    assert held.last_error == "PAGERDUTY_EVENTS_URL must be an https:// URL, got 'http://events.pagerduty.example'"
    assert [r.getMessage() for r in caplog.records].count("notification held: its channel cannot work") == 1
    assert pd.events == []
    # Fixed configuration (a restart): the held page goes out.
    fixed = pd.attach(make_app(PAGERDUTY_ROUTING_KEY=KEY))
    run(fixed, at=datetime.now(timezone.utc) + timedelta(minutes=2))
    assert notification(fixed, row_id).state == "sent" and len(pd.events) == 1


def test_misconfigured_channels_show_in_metrics(make_app):
    app = make_app(**HTTP_EVENTS_URL)
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'controlplane_alert_channel_misconfigured{channel="pagerduty"} 1.0' in text
    assert 'controlplane_alert_channel_misconfigured{channel="webhook"} 0.0' in text
