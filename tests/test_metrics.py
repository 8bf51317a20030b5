import re

from prometheus_client.parser import text_string_to_metric_families

from controlplane.jobs.records import record_run


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        families[family.name] = family.samples
    return families


def test_request_histogram_uses_route_templates_and_a_2s_bucket(make_app):
    app = make_app()

    @app.get("/things/<int:thing_id>")
    def thing(thing_id):
        return {"id": thing_id}

    client = app.test_client()
    for thing_id in (1, 2, 3):
        client.get(f"/things/{thing_id}")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="/things/<int:thing_id>"' in text
    assert 'route="/things/1"' not in text
    assert re.search(r'http_server_request_duration_seconds_bucket\{le="2\.0",method="GET",'
                     r'route="/things/<int:thing_id>",status="200"\} 3\.0', text)


def test_unmatched_paths_share_one_label(client):
    client.get("/random/a")
    client.get("/random/b")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="<unmatched>",status="404"' in text
    assert "/random/a" not in text


def test_metrics_include_pool_checks_jobs_and_build(app, client):
    runner = app.extensions["controlplane.health"].make_runner(app, "test")
    runner.run(force=True)
    runner.shutdown()
    with app.app_context():
        record_run("health-refresh", "test", lambda: None)
        record_run("retention", "test", lambda: 1 / 0)
    families = scrape(client)
    for name in ("http_server_requests_in_flight", "controlplane_db_pool_size", "controlplane_db_pool_checked_out",
                 "controlplane_db_pool_idle", "controlplane_db_pool_overflow", "controlplane_build_info"):
        assert name in families, name
    status = {(s.labels["check"], s.labels["status"]): s.value for s in families["controlplane_check_status"]}
    assert status[("database", "healthy")] == 1 and status[("database", "unhealthy")] == 0
    assert status[("postal", "unconfigured")] == 1
    assert any(s.labels["check"] == "database" for s in families["controlplane_check_duration_seconds"])
    outcome = {s.labels["job"]: s.value for s in families["controlplane_job_last_run_success"]}
    assert outcome == {"health-refresh": 1, "retention": 0}
    assert {s.labels["job"] for s in families["controlplane_job_last_success_timestamp_seconds"]} == {"health-refresh"}
    build = families["controlplane_build_info"][0]
    assert build.labels["environment"] == "development" and build.labels["version"]


def test_metrics_still_answer_when_the_database_is_down(make_app):
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", DB_CONNECT_TIMEOUT_SECONDS="1",
                   migrate=False)
    families = scrape(app.test_client())
    assert "http_server_request_duration_seconds" in families
    status = {(s.labels["check"], s.labels["status"]): s.value for s in families["controlplane_check_status"]}
    assert status[("database", "unhealthy")] == 1
