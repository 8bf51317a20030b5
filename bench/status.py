"""Status page benchmarks (issue 6), on PostgreSQL.

    .venv/bin/python -m bench.status summary [--rounds 7] [--seconds 4] [--connections 32] [--uncached]
    .venv/bin/python -m bench.status page [--renders 200]

summary: GET /api/v2/summary.json of the service (20 components from check results and the last
         5 minutes of requests, open incidents with their updates, maintenance) against a bare
         Flask app returning the same bytes as a constant, both under the project's gunicorn
         config, with the production defaults (STATUS_CACHE_SECONDS=2: each process computes the
         document at most every 2 s). Target: ours/baseline >= 0.60.
page:    GET /status rendered uncached (STATUS_CACHE_SECONDS=0, HEALTH_CACHE_SECONDS=0, no 304:
         every call re-reads the check results, queries and renders)
         with 20 components in 4 groups, 90 days of daily check counts, 24 hours of per-minute
         request counts, an active incident, five recent ones and a maintenance window. Target:
         median <= 50 ms. Printed beside the same-run cost of a bare Flask page of the same size
         through the same test client (the harness's own share).

Needs `wrk` (summary) and a PostgreSQL server (CONTROLPLANE_BENCH_POSTGRES_URL, default local).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import yaml

from bench.gateway import controlplane, environment
from bench.http_ratio import alternate, gunicorn
from bench.pg import fresh_database

GROUPS = ("Core", "Delivery", "Storage", "Operations")


def checks_file(directory: Path, components: int) -> Path:
    """`components` components in 4 groups, each fed by one check (disk: cheap, and not run here)."""
    document = {"defaults": {"interval": "15s", "timeout": "5s"}, "components": {}, "checks": {}}
    for n in range(components):
        document["components"][f"c{n}"] = {"name": f"Component {n}", "group": GROUPS[n % len(GROUPS)],
                                           "description": f"Part {n} of the service.", "traffic": n == 0}
        document["checks"][f"check{n}"] = {"kind": "disk", "target": [str(directory)], "component": f"c{n}"}
    path = directory / "checks.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def seed(env: dict, days: int = 90):
    """History and incidents, written through the app's own models; returns that app (built in
    this process from `env`, which it sets)."""
    import os

    os.environ.update(env)
    from controlplane import create_app
    from controlplane.dbtypes import add_counts
    from controlplane.extensions import db
    from controlplane.health.models import CheckDay
    from controlplane.health.runner import CheckOutcome, store_outcomes
    from controlplane.status.incidents import create_incident, update_incident
    from controlplane.status.maintenance import schedule
    from controlplane.telemetry.models import BUCKET_COLUMNS, RequestMinute
    from controlplane.timeutil import utcnow

    app = create_app()
    config = app.extensions["controlplane.health"].config
    now = utcnow()
    with app.app_context():
        for spec in config.checks:
            for day in range(1, days):
                db.session.add(CheckDay(check_name=spec.name, day=(now - timedelta(days=day)).date(),
                                        total=5760, unhealthy=12 if day % 17 == 0 else 0, degraded=3))
        db.session.commit()
        store_outcomes([CheckOutcome(spec.name, "healthy", 50.0, "percent", 1.0, now, "ok") for spec in config.checks],
                       "bench")
        minute = now.replace(second=0, microsecond=0)
        for back in range(24 * 60):
            buckets = {c: 0 for c in BUCKET_COLUMNS}
            buckets.update(b2=300, b3=120, b4=40, b5=8, b6=back % 3)
            add_counts(RequestMinute, {"minute": minute - timedelta(minutes=back)},
                       {"count": sum(buckets.values()), "errors": 1, "duration_sum": 12.0, **buckets})
        db.session.commit()
        for n in range(5):
            incident = create_incident(config, {}, f"Past incident {n}", "investigating", "Looking into it.",
                                       "minor", {"c1": "degraded_performance"}, "bench")
            update_incident(config, {}, incident.id, "identified", "Found the cause.", None, "bench")
            update_incident(config, {}, incident.id, "resolved", "Fixed.", None, "bench")
        create_incident(config, {}, "Slow delivery to one provider", "identified", "Queues are growing.", "major",
                        {"c2": "partial_outage", "c3": "degraded_performance"}, "bench")
        schedule(config, "Database upgrade", "Writes pause briefly.", ["c4", "c5"], now + timedelta(days=1),
                 now + timedelta(days=1, hours=1), "bench")
    return app


def _setup(components: int):
    database_url, drop = fresh_database("cp_bench_status")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-status-"))
    env = {**environment(database_url, str(data_dir)), "CHECKS_FILE": str(checks_file(data_dir, components)),
           "HEALTH_CACHE_SECONDS": "0", "STATUS_CACHE_SECONDS": "0", "STATUS_PAGE_REFRESH_SECONDS": "60"}
    controlplane(env, "db", "upgrade", "--skip-backup")
    return env, data_dir, drop


def summary(args) -> None:
    import httpx

    env, data_dir, drop = _setup(components=20)
    try:
        seed(env)
        # The production defaults: the health snapshot and the public answers are kept 2 s per
        # process (--uncached: every request computes its answer).
        env["HEALTH_CACHE_SECONDS"] = "2"
        env["STATUS_CACHE_SECONDS"] = "0" if args.uncached else "2"
        with gunicorn("controlplane.wsgi:app", env, args.workers) as ours_url:  # as deployed
            document = httpx.get(ours_url + "/api/v2/summary.json").content
            (data_dir / "summary.json").write_bytes(document)
            env["BENCH_DOCUMENT"] = str(data_dir / "summary.json")
            with gunicorn("bench.apps:make_document()", env, args.workers) as baseline_url:
                print(f"summary.json: {len(document):,} bytes; bare Flask serves the same bytes")
                ratio = alternate({"baseline": baseline_url + "/api/v2/summary.json",
                                   "ours": ours_url + "/api/v2/summary.json"}, args)
        print(f"summary.json ratio ours/baseline: {ratio:.3f} (target >= 0.60)")
    finally:
        drop()


def page(args) -> None:
    env, _, drop = _setup(components=20)
    try:
        app = seed(env)
        from flask import Flask

        client = app.test_client()
        html = client.get("/status").data
        assert html.count(b'class="component"') == 20, "the page should show 20 components"
        bare = Flask("bare-page")
        bare.add_url_rule("/status", "page", lambda: html)
        bare_client = bare.test_client()

        def timed(get) -> list[float]:
            samples = []
            for _ in range(args.renders):
                started = time.perf_counter()
                answer = get("/status")
                samples.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
            return samples

        for _ in range(10):  # warm-up: imports, template compilation, connection pool
            client.get("/status")
        ours, baseline = timed(client.get), timed(bare_client.get)
        print(f"/status with 20 components x 90 days: {len(html):,} bytes")
        print(f"  ours:     median {statistics.median(ours):.1f} ms, p95 "
              f"{statistics.quantiles(ours, n=20)[-1]:.1f} ms over {args.renders} renders")
        print(f"  baseline: median {statistics.median(baseline):.2f} ms (bare Flask, same bytes, same client)")
        print(f"page median {statistics.median(ours):.1f} ms (target <= 50 ms); "
              f"ratio ours/baseline {statistics.median(ours) / statistics.median(baseline):.0f}x")
    finally:
        drop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=("summary", "page"))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--uncached", action="store_true", help="summary: STATUS_CACHE_SECONDS=0")
    args = parser.parse_args(argv)
    {"summary": summary, "page": page}[args.scenario](args)


if __name__ == "__main__":
    sys.exit(main())
