import time
from datetime import timedelta

import pytest
import yaml

from controlplane.extensions import db
from controlplane.health.models import CheckResult
from controlplane.jobs.records import write_heartbeat
from controlplane.timeutil import utcnow
from tests.doubles.silent import SilentServer

DETAIL_FIELDS = {"status", "observed_value", "observed_unit", "duration_ms", "checked_at", "age_s", "message"}


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def checks_file(tmp_path, checks: dict, components=None) -> str:
    path = tmp_path / "checks.yaml"
    path.write_text(yaml.safe_dump({"components": components or {}, "checks": checks}))
    return str(path)


def run_checks(app):
    runner = app.extensions["controlplane.health"].make_runner(app, "test-runner")
    try:
        return {o.name: o for o in runner.run(force=True)}
    finally:
        runner.shutdown()


def beat(app, leader=True):
    with app.app_context():
        write_heartbeat("worker-1:1", utcnow(), leader)


def test_health_reports_the_contract_shape(app, client):
    beat(app)
    run_checks(app)
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200
    assert list(body)[:5] == ["status", "version", "uptime", "checks", "details"]
    assert body["status"] == "healthy"
    assert isinstance(body["uptime"], int)
    assert body["checks"] == {"database": "healthy", "migrations": "healthy", "postal": "unconfigured",
                              "redis": "unconfigured", "disk": "healthy", "worker": "healthy",
                              "alerting": "healthy"}
    for detail in body["details"].values():
        assert set(detail) == DETAIL_FIELDS
    database = body["details"]["database"]
    assert database["observed_unit"] == "ms" and database["observed_value"] >= 0
    assert database["checked_at"].endswith("Z") and database["age_s"] >= 0
    assert body["details"]["postal"]["message"].startswith("POSTAL_API_URL is not set; mail is written to ")


def test_ready_is_503_while_no_results_exist_then_200(app, client):
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.get_json()["status"] == "starting"
    run_checks(app)
    assert client.get("/ready").status_code == 200


def test_health_answers_from_cache_while_a_dependency_hangs(tmp_path, make_app, silent):
    path = checks_file(tmp_path, {
        "database": {"kind": "database", "hard": True},
        "postal": {"kind": "postal", "timeout": "0.5s", "interval": "1s"},
    })
    app = make_app(CHECKS_FILE=path, POSTAL_API_URL=silent.url, POSTAL_API_KEY="k" * 24)
    outcomes = run_checks(app)
    assert outcomes["postal"].status == "unhealthy"
    assert outcomes["postal"].message == "timed out after 0.5s"
    client = app.test_client()
    started = time.perf_counter()
    response = client.get("/health")
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, "/health must not wait on the hanging dependency"
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "degraded"  # postal is soft
    assert body["checks"]["postal"] == "unhealthy"


def test_a_hung_check_is_not_started_again_while_it_still_hangs(tmp_path, make_app, monkeypatch):
    import threading

    from controlplane.health import kinds
    from controlplane.health.kinds import CheckKind, Observation

    release, calls = threading.Event(), []

    class HangingKind(CheckKind):
        name = "hanging"
        metrics = {}

        def run(self, spec, ctx):
            calls.append(1)
            release.wait(10)
            return Observation(message="finally answered")

    monkeypatch.setitem(kinds.KINDS, "hanging", HangingKind())
    path = checks_file(tmp_path, {"stuck": {"kind": "hanging", "timeout": "0.2s", "interval": "1s"}})
    app = make_app(CHECKS_FILE=path)
    runner = app.extensions["controlplane.health"].make_runner(app, "test")
    try:
        first = runner.run(force=True)[0]
        second = runner.run(force=True)[0]
        release.set()
        time.sleep(0.1)
        third = runner.run(force=True)[0]
    finally:
        runner.shutdown()
    assert first.status == "unhealthy" and first.message == "timed out after 0.2s"
    assert second.status == "unhealthy" and second.message.startswith("still running after")
    assert third.status == "healthy" and third.message == "finally answered"
    assert len(calls) == 2  # the first (hung) run and the third; never a pile-up


def test_hard_check_failure_makes_health_503_and_ready_503(tmp_path, make_app):
    path = checks_file(tmp_path, {"migrations": {"kind": "migrations", "hard": True}})
    app = make_app(CHECKS_FILE=path, migrate=False)  # schema never created
    outcomes = run_checks(app)
    assert outcomes["migrations"].status == "unhealthy"
    assert "run `controlplane db upgrade`" in outcomes["migrations"].message
    client = app.test_client()
    # The results could not be stored (no tables), so this instance serves what it ran itself.
    app.extensions["controlplane.health"].cache.put(list(outcomes.values()))
    app.extensions["controlplane.health"].cache.ttl = 3600
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["status"] == "unhealthy"
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.get_json()["status"] == "unavailable"
    assert "hard check migrations is unhealthy" in ready.get_json()["reason"]


def test_ready_is_503_while_draining(app, client):
    run_checks(app)
    assert client.get("/ready").status_code == 200
    app.extensions["controlplane.health"].lifecycle.start_draining()
    response = client.get("/ready")
    assert response.status_code == 503 and response.get_json()["status"] == "draining"
    assert client.get("/live").status_code == 200


def test_live_never_touches_dependencies(make_app):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", migrate=False)
    response = app.test_client().get("/live")
    assert response.status_code == 200 and response.get_json()["status"] == "alive"


def test_database_outage_seen_by_this_instance_is_reported(make_app):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", DB_CONNECT_TIMEOUT_SECONDS="1",
                   migrate=False)
    response = app.test_client().get("/health")
    body = response.get_json()
    assert response.status_code == 503
    assert body["checks"]["database"] == "unhealthy"
    assert "this instance cannot read the database" in body["details"]["database"]["message"]


def test_stale_results_are_reported_as_unknown(app, client):
    beat(app)
    run_checks(app)
    with app.app_context():
        old = utcnow() - timedelta(hours=1)
        for row in db.session.query(CheckResult).all():
            row.checked_at = old
        db.session.commit()
    body = client.get("/health").get_json()
    assert body["checks"]["database"] == "unknown"
    assert body["details"]["database"]["message"].startswith("stale: last ran 3600s ago")
    assert body["status"] == "degraded"


def test_postal_check_is_healthy_when_authenticated_and_sends_no_mail(tmp_path, make_app, postal):
    app = make_app(POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key)
    outcome = run_checks(app)["postal"]
    assert outcome.status == "healthy", outcome.message
    assert outcome.message.startswith("reachable and authenticated")
    assert [r["path"] for r in postal.requests] == ["/api/v1/messages/message"]
    assert all("send" not in r["path"] for r in postal.requests)


def test_postal_check_fails_on_a_rejected_key(make_app, postal):
    app = make_app(POSTAL_API_URL=postal.url, POSTAL_API_KEY="wrongkey0123456789abcdef")
    outcome = run_checks(app)["postal"]
    assert outcome.status == "unhealthy"
    assert outcome.message == "Postal rejected POSTAL_API_KEY (InvalidServerAPIKey)"


def test_postal_check_without_key_is_degraded(make_app, postal):
    outcome = run_checks(make_app(POSTAL_API_URL=postal.url))["postal"]
    assert outcome.status == "degraded"
    assert "POSTAL_API_KEY is not set" in outcome.message


def test_postal_check_fails_on_5xx(make_app, postal):
    postal.mode = "error500"
    outcome = run_checks(make_app(POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key))["postal"]
    assert outcome.status == "unhealthy" and outcome.message == "Postal answered HTTP 500"


def test_postal_check_fails_when_nothing_listens(make_app):
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    outcome = run_checks(make_app(POSTAL_API_URL=url, POSTAL_API_KEY="k" * 24))["postal"]
    assert outcome.status == "unhealthy" and outcome.message.startswith(f"cannot reach Postal at {url}")


def test_slow_postal_crosses_the_warn_threshold(tmp_path, make_app, postal):
    postal.mode, postal.delay = "slow", 0.2
    path = checks_file(tmp_path, {"postal": {"kind": "postal", "thresholds": {"latency_ms": {"warn": 100, "fail": 5000}}}})
    outcome = run_checks(make_app(CHECKS_FILE=path, POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key))["postal"]
    assert outcome.status == "degraded"
    assert outcome.observed_unit == "ms" and outcome.observed_value >= 200


def test_redis_check_pings_a_real_server(make_app):
    outcome = run_checks(make_app(REDIS_URL="redis://127.0.0.1:6379/0"))["redis"]
    if outcome.status != "healthy" and "Connection refused" in outcome.message:
        pytest.skip("no Redis on 127.0.0.1:6379")
    assert outcome.status == "healthy" and outcome.message.startswith("PONG")


def test_redis_check_fails_when_nothing_listens(make_app):
    from tests.conftest import free_port

    outcome = run_checks(make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))["redis"]
    assert outcome.status == "unhealthy" and outcome.message.startswith("PING failed")


def test_disk_check_uses_free_percent_thresholds(tmp_path, make_app):
    path = checks_file(tmp_path, {"disk": {"kind": "disk", "target": ["data", "backups"],
                                           "thresholds": {"free_percent": {"warn": 99.999, "fail": 99.99}}}})
    outcome = run_checks(make_app(CHECKS_FILE=path))["disk"]
    assert outcome.status == "unhealthy"  # no real disk is 99.99 % free
    assert outcome.observed_unit == "%"
    assert "backups" in outcome.message


def test_worker_check_needs_a_fresh_heartbeat(app):
    assert run_checks(app)["worker"].message.startswith("no worker has ever reported")
    beat(app, leader=False)
    outcome = run_checks(app)["worker"]
    assert outcome.status == "degraded" and "no leader holds the lock" in outcome.message
    beat(app, leader=True)
    assert run_checks(app)["worker"].status == "healthy"


def test_check_results_are_stored_for_uptime_history(app):
    run_checks(app)
    run_checks(app)
    with app.app_context():
        rows = db.session.query(CheckResult).filter_by(check_name="database").all()
    assert len(rows) == 2
    assert {r.instance for r in rows} == {"test-runner"}
