"""Probes are not traffic: /health, /ready, /live, /metrics and static files never reach the counts
that error-ratio, latency and burn-rate rules and the status page read, whatever they answer
(503 while starting up or draining); user requests, 5xx included, still do."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from controlplane.extensions import db
from controlplane.telemetry.models import RequestMinute, RequestStat
from tests.conftest import POSTAL_DOWN, serve_traffic
from tests.test_status_components import store_results

PROBES_ANSWERING_200 = ("/health", "/live", "/metrics", "/status/static/status.css")


def minute_totals(app) -> tuple[int, int]:
    """(requests, 5xx) in request_minutes: what the alert rules and the status page read."""
    app.extensions["controlplane.request_stats"].flush()
    with app.app_context():
        total, errors = db.session.execute(select(func.coalesce(func.sum(RequestMinute.count), 0),
                                                  func.coalesce(func.sum(RequestMinute.errors), 0))).one()
        return int(total), int(errors)


def api_component(app) -> str:
    components = app.test_client().get("/api/v2/components.json").get_json()["components"]
    return next(c["status"] for c in components if c["name"] == "MailGoat API")


def request_counts(client, family_name: str) -> dict[tuple[str, str], float]:
    """{(route, status): count} of one request histogram, as Prometheus scrapes it."""
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.labels["route"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text) if family.name == family_name
            for s in family.samples if s.name.endswith("_count")}


def test_ready_503s_while_starting_and_draining_count_for_nothing(app):
    client = app.test_client()
    probes_before = request_counts(client, "http_server_probe_duration_seconds")
    starting = [client.get("/ready") for _ in range(30)]  # no check has run yet
    assert {(r.status_code, r.get_json()["status"]) for r in starting} == {(503, "starting")}

    store_results(app)  # every check healthy
    app.extensions["controlplane.health"].lifecycle.start_draining()  # what SIGTERM does
    draining = [client.get("/ready") for _ in range(30)]
    assert {(r.status_code, r.get_json()["status"]) for r in draining} == {(503, "draining")}
    for path in PROBES_ANSWERING_200:
        for _ in range(10):
            assert client.get(path).status_code == 200, path

    assert minute_totals(app) == (0, 0)
    with app.app_context():
        assert db.session.query(RequestStat).count() == 0
    assert api_component(app) == "operational"
    # Prometheus keeps them apart: the rules' histogram never sees a probe, Grafana still can.
    user_routes = {route for route, _ in request_counts(client, "http_server_request_duration_seconds")}
    assert not user_routes & {"/health", "/ready", "/live", "/metrics", "/status/static/<path:filename>"}
    probes = request_counts(client, "http_server_probe_duration_seconds")
    assert probes[("/ready", "503")] - probes_before.get(("/ready", "503"), 0) == 60
    assert probes[("/live", "200")] - probes_before.get(("/live", "200"), 0) == 10


def test_user_5xx_still_count_and_probes_between_them_change_nothing(make_app):
    app = make_app(**POSTAL_DOWN)
    store_results(app)
    serve_traffic(app, ok=20, failing=10)
    client = app.test_client()
    for _ in range(50):
        assert client.get("/health").status_code == 200
    app.extensions["controlplane.health"].lifecycle.start_draining()
    for _ in range(50):
        assert client.get("/ready").status_code == 503
    assert minute_totals(app) == (30, 10)
    assert api_component(app) == "major_outage"  # a third of user requests failed
