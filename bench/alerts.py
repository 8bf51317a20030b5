"""Alert evaluation time against the number of recorded requests (issue 5).

    .venv/bin/python -m bench.alerts [--evaluations 30]

On PostgreSQL, fills `request_stats` the way three instances (two gunicorn workers each) flushing
every 5 s would over the longest rule window (6 h): ten routes, 2xx and 5xx rows per flush. Once
with 10 thousand requests in total and once with 1 million, the same rows with other counts.
Then times `evaluate()` of every shipped rule (median of --evaluations runs, after a warm-up).
Target: <= 50 ms, and no growth from 10 thousand to 1 million requests.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from bench.pg import fresh_database

ROOT = Path(__file__).resolve().parent.parent
PROCESSES, ROUTES, FLUSH_SECONDS, HOURS = 6, 10, 5, 6


def fill(app, total_requests: int) -> int:
    """Detail rows as the flushers write them (saturated: every process, route and period has
    traffic, the most rows there can be), and the per-minute rows the rules read."""
    from controlplane.extensions import db
    from controlplane.telemetry.models import RequestMinute, RequestStat
    from controlplane.timeutil import utcnow

    periods = HOURS * 3600 // FLUSH_SECONDS
    rows_per_period = PROCESSES * ROUTES * 2
    per_row = max(1, total_requests // (periods * rows_per_period))
    now = utcnow()
    random.seed(1)
    with app.app_context():
        db.session.execute(text("TRUNCATE request_stats"))
        batch = []
        for period in range(periods):
            end = now - timedelta(seconds=period * FLUSH_SECONDS)
            for process in range(PROCESSES):
                for route in range(ROUTES):
                    for klass, count in (("2xx", per_row), ("5xx", max(0, per_row // 100))):
                        buckets = [0] * 13
                        buckets[random.randrange(0, 8)] = count
                        batch.append({"instance": f"machine{process // 2}:{process}", "period_start": end - timedelta(
                            seconds=FLUSH_SECONDS), "period_end": end, "route": f"/api/v1/route{route}", "method": "GET",
                            "status_class": klass, "count": count, "duration_sum": count * 0.02,
                            "bucket_counts": json.dumps(buckets)})
            if len(batch) >= 20000:
                db.session.execute(RequestStat.__table__.insert(), batch)
                batch.clear()
        if batch:
            db.session.execute(RequestStat.__table__.insert(), batch)
        db.session.execute(text("TRUNCATE request_minutes"))
        minutes = HOURS * 60
        per_minute = total_requests // minutes
        db.session.execute(RequestMinute.__table__.insert(), [
            {"minute": (now - timedelta(minutes=m)).replace(second=0, microsecond=0), "count": per_minute,
             "errors": per_minute // 100, "duration_sum": per_minute * 0.02,
             **{f"b{i}": (per_minute if i == 3 else 0) for i in range(13)}} for m in range(minutes)])
        db.session.commit()
        db.session.execute(text("ANALYZE request_stats"))
        db.session.commit()
        return db.session.execute(text("SELECT count(*), (SELECT sum(count) FROM request_minutes) FROM request_stats")).one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=30)
    args = parser.parse_args()
    database_url, drop = fresh_database("cp_bench_alerts")
    try:
        os.environ.update({"APP_ENV": "development", "DATA_DIR": tempfile.mkdtemp(), "LOG_LEVEL": "ERROR",
                           "DATABASE_URL": database_url})
        sys.path.insert(0, str(ROOT))
        from controlplane import create_app
        from controlplane.alerting.engine import evaluate
        from controlplane.extensions import db
        from controlplane.schema import upgrade_database

        app = create_app()
        with app.app_context():
            upgrade_database()
        settings, rules = app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"]
        results = {}
        for total in (10_000, 1_000_000):
            rows, requests = fill(app, total)
            timings = []
            with app.app_context():
                for i in range(args.evaluations + 3):
                    started = time.perf_counter()
                    evaluate(settings, rules)
                    if i >= 3:
                        timings.append((time.perf_counter() - started) * 1000)
                    db.session.remove()
            results[total] = statistics.median(timings)
            print(f"{requests:>9,} requests in {rows:,} request_stats rows ({PROCESSES} processes on 3 instances, "
                  f"{HOURS} h): one evaluation of {len(rules.rules)} rules, median {results[total]:.1f} ms "
                  f"(p90 {sorted(timings)[int(len(timings) * 0.9)]:.1f} ms)")
        worst = max(results.values())
        print(f"evaluation time: {worst:.1f} ms  target <= 50  {'PASS' if worst <= 50 else 'FAIL'}; "
              f"1M / 10k = {results[1_000_000] / results[10_000]:.2f} (no growth: about 1)")
        return 0
    finally:
        drop()


if __name__ == "__main__":
    sys.exit(main())
