"""Detection latency: from the start of an error burst to the PagerDuty trigger (issue 5).

    .venv/bin/python -m bench.detection [--for-seconds 30] [--interval 5]

An app and its worker in this process, on PostgreSQL, with the real scheduler, recorder flushes,
evaluation job and notifier job; PagerDuty replaced at its transport by a double that records
when the trigger arrives. Traffic runs at about 40 requests/s; at t0 a fifth of it starts failing
with 503 (Postal down behind a read-through). Target: trigger within `for` + 2 evaluation
intervals of t0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.pg import fresh_database

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--for-seconds", type=int, default=30)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    database_url, drop = fresh_database("cp_bench_detect")
    work = Path(tempfile.mkdtemp())
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [{
        "name": "HighErrorRate", "indicator": "http_error_ratio", "params": {"window": "5m", "min_requests": 50},
        "op": ">", "threshold": 0.01, "for": f"{args.for_seconds}s", "labels": {"severity": "critical"},
        "annotations": {"summary": "5xx ratio {value:.1%}"}}]}))
    os.environ.update({"APP_ENV": "development", "DATA_DIR": str(work), "LOG_LEVEL": "ERROR",
                       "DATABASE_URL": database_url,
                       "ALERT_RULES_FILE": str(rules), "ALERT_EVALUATION_SECONDS": str(args.interval),
                       "REQUEST_STATS_FLUSH_SECONDS": "1", "PAGERDUTY_ROUTING_KEY": "a" * 32, "LEADER_POLL_SECONDS": "1",
                       "POSTAL_TRANSPORT": "http", "POSTAL_API_URL": "http://127.0.0.1:9", "POSTAL_API_KEY": "k" * 24,
                       "BACKUP_HOURLY": "false"})
    sys.path.insert(0, str(ROOT))
    import httpx2

    from controlplane import create_app
    from controlplane.alerting import pagerduty
    from controlplane.extensions import db
    from controlplane.gateway.keys import create_key
    from controlplane.gateway.models import MessageRecipient
    from controlplane.jobs import Worker
    from controlplane.schema import upgrade_database

    triggered = threading.Event()
    trigger_at = []

    def pagerduty_double(request):
        event = json.loads(request.content)
        if event.get("event_action") == "trigger" and not triggered.is_set():
            trigger_at.append(time.monotonic())
            triggered.set()
        return httpx2.Response(202, json={"status": "success", "dedup_key": event.get("dedup_key")})

    app = create_app()
    # The app's one PagerDuty sender, answering through the double.
    app.extensions["controlplane.pagerduty"] = pagerduty.PagerDutySender(
        app.extensions["controlplane.settings"].pagerduty_events_url, httpx2.MockTransport(pagerduty_double))
    worker = None
    try:
        with app.app_context():
            upgrade_database()
            key = create_key(app.extensions["controlplane.settings"], name="b", scopes=["send"], actor="bench").key
        client, headers = app.test_client(), {"X-Server-API-Key": key}
        sent = client.post("/api/v1/send/message", json={"to": ["a@example.com"], "from": "x@mailgoat.dev",
                                                         "subject": "s", "plain_body": "b"}, headers=headers).get_json()
        with app.app_context():
            db.session.execute(MessageRecipient.__table__.update().values(postal_id=1))
            db.session.commit()
        worker = Worker(app)
        worker.start()
        deadline = time.monotonic() + args.for_seconds + 10 * args.interval + 60
        t0 = None
        n = 0
        while not triggered.is_set() and time.monotonic() < deadline:
            n += 1
            if t0 is None and n > 200:  # some healthy traffic first, then the burst starts
                t0 = time.monotonic()
            if t0 is not None and n % 5 == 0:
                client.post("/api/v1/messages/deliveries", json={"id": sent["message_id"]}, headers=headers)
            else:  # a user route: probes such as /live are not traffic
                client.get("/api/v1/openapi.json")
            time.sleep(0.025)
        if not trigger_at:
            print("no trigger arrived: FAIL")
            return 1
        latency = trigger_at[0] - t0
        bound = args.for_seconds + 2 * args.interval
        print(f"detection latency: {latency:.1f} s from the first 5xx to the PagerDuty trigger "
              f"(for {args.for_seconds} s, evaluation every {args.interval:g} s, flush every 1 s)")
        print(f"bound for + 2 intervals = {bound:.0f} s  {'PASS' if latency <= bound else 'FAIL'}")
        return 0
    finally:
        if worker is not None:
            worker.stop()
        app.extensions["controlplane.request_stats"].stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        drop()


if __name__ == "__main__":
    sys.exit(main())
