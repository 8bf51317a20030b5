"""Who watches the alert engine: web instances page AlertingStalled (once, however many there are)
when no evaluation completed within ALERT_WATCHDOG_SECONDS and resolve it when evaluation resumes;
/health's `alerting` check says so; the heartbeat ping follows each evaluation and its failure
breaks nothing."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from controlplane.alerting.watchdog import DEDUP_KEY, evaluation_completed, watchdog_row
from controlplane.extensions import db
from controlplane.jobs import Worker, _evaluate_alerts
from controlplane.jobs.records import write_heartbeat
from controlplane.settings import Settings, SettingsError
from controlplane.timeutil import as_utc, utcnow
from tests.conftest import run_scheduled_checks
from tests.test_alert_notifications import KEY, PagerDutyDouble


@pytest.fixture
def pd():
    return PagerDutyDouble()


def web(make_app, pd, migrate=True, **env):
    """A web instance on the test's database, paging through the double."""
    return pd.attach(make_app(migrate=migrate, PAGERDUTY_ROUTING_KEY=KEY, **env))


def beat(app, leader=True, instance="worker-1:1"):
    with app.app_context():
        write_heartbeat(instance, utcnow(), leader)


def evaluated(app, seconds_ago: float, instance="worker-1:1"):
    """As the leader's alert-evaluate job records a completed pass."""
    with app.app_context():
        evaluation_completed(app, app.extensions["controlplane.settings"], instance,
                             now=utcnow() - timedelta(seconds=seconds_ago))


def tick(app, now):
    return app.extensions["controlplane.alert_watcher"].tick(now)


def health(app) -> dict:
    return app.test_client().get("/health").get_json()


def stalled_events(pd):
    return [(event["event_action"], event["dedup_key"]) for event in pd.events]


def test_two_web_instances_page_once_when_evaluation_stalls_and_resolve_once_when_it_resumes(make_app, pd):
    first = web(make_app, pd)
    second = web(make_app, pd, migrate=False)  # the same database, another instance
    beat(first)
    evaluated(first, seconds_ago=300)  # the only worker died five minutes ago
    now = utcnow()

    assert [tick(first, now), tick(second, now)] == [True, False]  # one look per tick between them
    assert stalled_events(pd) == [("trigger", DEDUP_KEY)]
    (trigger,) = pd.events
    assert trigger["routing_key"] == KEY and trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"].startswith("AlertingStalled: alert evaluation stalled: last evaluation 300s")
    assert trigger["payload"]["custom_details"]["bound_seconds"] == 120
    assert trigger["links"][0]["href"].endswith("docs/runbooks.md#alerting-stalled")

    for later in (20, 40, 60):  # still stalled: both keep watching, nobody pages again
        tick(second, now + timedelta(seconds=later))
        tick(first, now + timedelta(seconds=later))
    assert len(pd.events) == 1

    evaluated(first, seconds_ago=0)  # a worker is back
    resumed = utcnow() + timedelta(seconds=80)
    assert [tick(second, resumed), tick(first, resumed)] == [True, False]
    assert stalled_events(pd) == [("trigger", DEDUP_KEY), ("resolve", DEDUP_KEY)]
    tick(first, resumed + timedelta(seconds=20))
    assert len(pd.events) == 2


def test_health_shows_the_stall_on_every_instance_and_ready_stays_200(make_app, pd):
    first = web(make_app, pd)
    second = web(make_app, pd, migrate=False)
    beat(first)
    evaluated(first, seconds_ago=300)
    tick(first, utcnow())
    runner = second.extensions["controlplane.health"].make_runner(second, "worker-1:1")
    try:
        runner.run(force=True)  # the other checks, so /ready has its hard checks
    finally:
        runner.shutdown()
    body = health(second)
    alerting = body["details"]["alerting"]
    assert body["checks"]["alerting"] == "unhealthy" and body["status"] == "degraded"
    assert alerting["message"].startswith("alert evaluation stalled: last evaluation 30")
    assert "(bound 120s)" in alerting["message"] and "heartbeat ping: unconfigured" in alerting["message"]
    assert alerting["observed_unit"] == "s" and alerting["observed_value"] >= 300
    assert second.test_client().get("/ready").status_code == 200  # not a hard check


def test_a_healthy_engine_is_a_healthy_check_and_pages_nobody(make_app, pd):
    app = web(make_app, pd)
    beat(app)
    evaluated(app, seconds_ago=5)
    assert tick(app, utcnow())
    alerting = health(app)["details"]["alerting"]
    assert alerting["status"] == "healthy", alerting
    assert alerting["message"].startswith("last evaluation 5s ago by worker-1:1")
    assert pd.events == []


def test_no_live_leader_degrades_the_check_before_the_bound(make_app, pd):
    app = web(make_app, pd)
    beat(app, leader=False)
    evaluated(app, seconds_ago=20)
    tick(app, utcnow())
    alerting = health(app)["details"]["alerting"]
    assert alerting["status"] == "degraded"
    assert "no live leader (1 live worker(s)): nothing evaluates the rules" in alerting["message"]
    assert pd.events == []


def test_an_engine_that_never_evaluated_pages_once_the_bound_has_passed(make_app, pd):
    app = web(make_app, pd, ALERT_WATCHDOG_SECONDS="60")
    with app.app_context():
        watchdog_row().created_at = utcnow() - timedelta(seconds=90)  # migrated; no worker ever came
        db.session.commit()
    tick(app, utcnow())
    assert stalled_events(pd) == [("trigger", DEDUP_KEY)]
    assert "no evaluation has completed in 90s (bound 60s)" in pd.events[0]["payload"]["summary"]


def test_a_page_that_cannot_go_out_is_tried_again_on_the_next_tick(make_app, pd):
    app = web(make_app, pd)
    evaluated(app, seconds_ago=300)
    pd.answers = [503]
    now = utcnow()
    tick(app, now)
    with app.app_context():
        assert watchdog_row().page_state == "ok" and "503" in watchdog_row().page_error
    tick(app, now + timedelta(seconds=20))
    assert [e["event_action"] for e in pd.events] == ["trigger", "trigger"]
    with app.app_context():
        assert watchdog_row().page_state == "triggered" and watchdog_row().page_error is None


def test_without_pagerduty_the_stall_is_an_explicit_no_op_said_once(make_app, pd, caplog):
    app = pd.attach(make_app())
    evaluated(app, seconds_ago=300)
    now = utcnow()
    with caplog.at_level("ERROR", logger="controlplane.alerting"):
        for later in (0, 20, 40):
            tick(app, now + timedelta(seconds=later))
    assert pd.events == []
    assert [r.getMessage() for r in caplog.records].count("watchdog page not sent") == 1
    assert health(app)["details"]["alerting"]["status"] == "unhealthy"


def test_a_misconfigured_channel_degrades_the_alerting_check_by_name(make_app, pd):
    app = web(make_app, pd, PAGERDUTY_EVENTS_URL="http://events.pagerduty.example")
    beat(app)
    evaluated(app, seconds_ago=1)
    tick(app, utcnow())
    alerting = health(app)["details"]["alerting"]
    assert alerting["status"] == "degraded"
    assert "channel pagerduty: PAGERDUTY_EVENTS_URL must be an https:// URL" in alerting["message"]
    # On-call's problem, not the customers': with every other check healthy, the public page says
    # nothing of it.
    run_scheduled_checks(app)
    components = app.test_client().get("/api/v2/components.json").get_json()["components"]
    assert {c["name"]: c["status"] for c in components}["Background jobs"] == "operational"


def run_evaluation(app):
    """The leader's alert-evaluate job, as the scheduler runs it."""
    worker = Worker(app)
    try:
        with app.app_context():
            _evaluate_alerts(worker)
    finally:
        worker.leader.release()


def metric(app, sample: str) -> float:
    for line in app.test_client().get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def test_the_heartbeat_url_is_pinged_after_each_evaluation_and_a_failing_ping_breaks_nothing(make_app, receiver):
    app = make_app(ALERT_HEARTBEAT_URL=receiver.url, WEBHOOK_ALLOW_PRIVATE_TARGETS="true")
    failed_before = metric(app, 'controlplane_alert_heartbeat_pings_total{outcome="failed"}')
    run_evaluation(app)
    (ping,) = receiver.received
    assert ping["headers"]["User-Agent"].startswith("mailgoat-controlplane/")
    with app.app_context():
        row = watchdog_row()
        first_evaluation, first_error = as_utc(row.evaluated_at), row.heartbeat_error
    assert first_error is None

    receiver.status = 500  # the watcher answers badly: the evaluation is still recorded
    run_evaluation(app)
    with app.app_context():
        row = watchdog_row()
        assert as_utc(row.evaluated_at) > first_evaluation and row.heartbeat_error == "HTTP 500"
    assert len(receiver.received) == 2
    assert metric(app, 'controlplane_alert_heartbeat_pings_total{outcome="failed"}') == failed_before + 1
    assert metric(app, "controlplane_alert_last_evaluation_timestamp_seconds") > 0


def test_an_unreachable_heartbeat_url_is_logged_and_shown_not_raised(make_app, pd):
    app = web(make_app, pd, ALERT_HEARTBEAT_URL="http://127.0.0.1:9/ping")
    beat(app)
    run_evaluation(app)
    tick(app, utcnow())
    alerting = health(app)["details"]["alerting"]
    assert alerting["status"] == "degraded"
    assert "heartbeat ping failed 0s ago: ConnectError" in alerting["message"]


def test_an_unset_heartbeat_url_is_visible_in_config(base_env):
    from controlplane.cli import main

    result = CliRunner().invoke(main, ["config"], env=base_env)
    assert result.exit_code == 0
    shown = json.loads(result.output[result.output.index("{"):])
    assert shown["alert_heartbeat_url"] == "unset" and shown["alert_watchdog_seconds"] == 120.0
    secret = CliRunner().invoke(main, ["config"], env={**base_env, "ALERT_HEARTBEAT_URL": "https://hc-ping.com/abc"})
    assert "hc-ping.com" not in secret.output  # the URL is the check's secret


def test_the_watchdog_bound_must_exceed_two_evaluation_intervals(base_env):
    with pytest.raises(SettingsError, match="ALERT_WATCHDOG_SECONDS must be at least twice ALERT_EVALUATION_SECONDS"):
        Settings.from_env({**base_env, "ALERT_EVALUATION_SECONDS": "15", "ALERT_WATCHDOG_SECONDS": "20"})
    assert Settings.from_env({**base_env, "ALERT_EVALUATION_SECONDS": "60"}).alert_watchdog_seconds == 240


def test_what_only_the_network_tells_degrades_the_check_and_sets_the_gauge(make_app, pd):
    app = web(make_app, pd, ALERT_EMAIL_TO="oncall@example.com", SMTP_HOST="127.0.0.1:9",
              ALERT_WEBHOOK_URL="https://127.0.0.1/hook")
    beat(app)
    evaluated(app, seconds_ago=1)
    assert metric(app, 'controlplane_alert_channel_misconfigured{channel="email"}') == 0.0  # not probed yet
    tick(app, utcnow())
    message = health(app)["details"]["alerting"]["message"]
    assert "channel email: SMTP_HOST 127.0.0.1:9 is unreachable" in message
    assert "channel webhook: ALERT_WEBHOOK_URL is refused by the SSRF guard: 127.0.0.1 resolves to 127.0.0.1" in message
    assert metric(app, 'controlplane_alert_channel_misconfigured{channel="email"}') == 1.0
    assert metric(app, 'controlplane_alert_channel_misconfigured{channel="webhook"}') == 1.0
    assert metric(app, 'controlplane_alert_channel_misconfigured{channel="pagerduty"}') == 0.0
