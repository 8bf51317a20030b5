import json
from datetime import timedelta

from controlplane.extensions import db
from controlplane.telemetry.metrics import LATENCY_BUCKETS
from controlplane.telemetry.models import RequestStat
from controlplane.telemetry.request_stats import prune_request_stats
from controlplane.timeutil import utcnow


def test_requests_are_flushed_per_route_and_status_class_with_the_instance(app, client):
    for _ in range(3):
        client.get("/api/v1/openapi.json")
    client.get("/nowhere")
    written = app.extensions["controlplane.request_stats"].flush()
    assert written == 2
    with app.app_context():
        rows = {(r.route, r.status_class): r for r in db.session.query(RequestStat).all()}
    spec = rows[("/api/v1/openapi.json", "2xx")]
    assert spec.count == 3 and spec.method == "GET"
    assert spec.instance.startswith("test-instance:")
    buckets = json.loads(spec.bucket_counts)
    assert len(buckets) == len(LATENCY_BUCKETS) + 1 and sum(buckets) == 3
    assert rows[("<unmatched>", "4xx")].count == 1
    assert spec.period_start <= spec.period_end


def test_latency_lands_in_the_bucket_holding_it_with_an_edge_at_2s(app):
    recorder = app.extensions["controlplane.request_stats"]
    recorder.record("/slow", "GET", 200, 1.9)
    recorder.record("/slow", "GET", 200, 2.0)
    recorder.record("/slow", "GET", 500, 2.1)
    recorder.flush()
    with app.app_context():
        rows = {r.status_class: json.loads(r.bucket_counts) for r in db.session.query(RequestStat).all()}
    two = LATENCY_BUCKETS.index(2.0)
    assert rows["2xx"][two] == 2  # 1.9 s and exactly 2.0 s are "le 2.0"
    assert rows["5xx"][two + 1] == 1  # 2.1 s is above it


def test_a_failed_flush_keeps_the_counts_for_the_next_one(app, monkeypatch):
    recorder = app.extensions["controlplane.request_stats"]
    recorder.record("/x", "GET", 200, 0.01)

    def broken_commit():
        raise RuntimeError("database away")

    with app.app_context():
        monkeypatch.setattr(db.session, "commit", broken_commit)
        try:
            recorder.flush()
        except RuntimeError:
            pass
        monkeypatch.undo()
        db.session.rollback()
        db.session.remove()
    recorder.record("/x", "GET", 200, 0.01)
    recorder.flush()
    with app.app_context():
        assert sum(r.count for r in db.session.query(RequestStat).all()) == 2


def test_background_flusher_writes_without_being_asked(make_app):
    import time

    app = make_app(REQUEST_STATS_FLUSH_SECONDS="0.2")
    app.test_client().get("/api/v1/openapi.json")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with app.app_context():
            if db.session.query(RequestStat).count():
                break
        time.sleep(0.1)
    with app.app_context():
        assert db.session.query(RequestStat).count() == 1


def test_retention_deletes_only_old_rows(app):
    with app.app_context():
        old, new = utcnow() - timedelta(days=30), utcnow()
        for when in (old, new):
            db.session.add(RequestStat(instance="i", period_start=when, period_end=when, route="/", method="GET",
                                       status_class="2xx", count=1, duration_sum=0.1, bucket_counts="[]"))
        db.session.commit()
        assert prune_request_stats(7) == 1
        assert db.session.query(RequestStat).count() == 1


def test_every_instance_adds_to_one_row_per_minute(make_app, app):
    """What alert rules read: a second instance's flush in the same minute adds to the same row."""
    from controlplane.telemetry.models import RequestMinute

    other = make_app(DATABASE_URL=app.extensions["controlplane.settings"].database_url, migrate=False,
                     INSTANCE_ID="other-instance")
    for recorder, statuses in ((app.extensions["controlplane.request_stats"], (200, 200, 500)),
                               (other.extensions["controlplane.request_stats"], (200, 503))):
        for status in statuses:
            recorder.record("/api", "GET", status, 2.1 if status >= 500 else 0.01)
        recorder.flush()
    above_two = f"b{LATENCY_BUCKETS.index(2.0) + 1}"
    with app.app_context():
        minutes = db.session.query(RequestMinute).all()
    assert len(minutes) in (1, 2)  # two only if the flushes straddled a minute boundary
    assert (sum(m.count for m in minutes), sum(m.errors for m in minutes)) == (5, 2)
    assert sum(getattr(m, above_two) for m in minutes) == 2  # both 5xx took 2.1 s
