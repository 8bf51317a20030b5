"""Gateway benchmarks on PostgreSQL (issue 3).

    .venv/bin/python -m bench.gateway accept   [--rounds 7] [--seconds 4] [--connections 32]
    .venv/bin/python -m bench.gateway dispatch [--messages 3000] [--postal-ms 20]
    .venv/bin/python -m bench.gateway durability [--messages 10000]

accept:   POST /api/v1/send/message (JSON, one recipient, a fresh idempotency key per request,
          auth + limits + validation + telemetry) against a bare Flask + SQLAlchemy endpoint that
          only inserts the same message and recipient rows, both under the project's gunicorn
          config on the same database. Target: ours/baseline >= 0.75.
dispatch: `controlplane worker` sending a backlog to a Postal double that answers in 20 ms.
          Target: >= 300 messages/s; the worker's peak RSS is printed.
durability: 10,000 sends accepted while the worker delivers; the worker is SIGKILLed twice and
          Postal answers 500 for a stretch. Reports accepted, delivered, lost (target 0) and
          recipients Postal saw twice (at-least-once delivery allows a few after a SIGKILL).

Needs `wrk` and a PostgreSQL server (CONTROLPLANE_BENCH_POSTGRES_URL, default the local one).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.http_ratio import alternate, gunicorn
from bench.pg import fresh_database

ROOT = Path(__file__).resolve().parent.parent

LUA = """
local counter = 0
local prefix = "?"
init = function(args)
  -- Unique per wrk thread and per run (tostring({}) holds this Lua state's table address).
  prefix = tostring(os.time()) .. tostring({}):sub(8)
end
request = function()
  counter = counter + 1
  local body = '{"to":["bench@example.com"],"from":"agent@mailgoat.dev","subject":"bench","plain_body":"hello",' ..
               '"headers":{"X-Idempotency-Key":"' .. prefix .. '-' .. counter .. '"}}'
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json", ["X-Server-API-Key"] = "%(key)s"}, body)
end
"""


def environment(database_url: str, data_dir: str) -> dict:
    return {**os.environ, "APP_ENV": "development", "DATA_DIR": data_dir, "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING", "REDIS_URL": "", "POSTAL_API_URL": "", "SENTRY_DSN": "",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "", "PYTHONPATH": str(ROOT)}


def controlplane(env, *args) -> str:
    return subprocess.run([sys.executable, "-m", "controlplane", *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def bench_key(env) -> str:
    output = controlplane(env, "keys", "create", "--name", "bench", "--scopes", "send",
                          "--rate-burst", "100000000", "--rate-hour", "100000000", "--rate-day", "100000000")
    return next(line.split()[1] for line in output.splitlines() if line.startswith("key "))


def accept(args) -> None:
    database_url, drop = fresh_database()
    data_dir = tempfile.mkdtemp(prefix="bench-gateway-")
    env = environment(database_url, data_dir)
    try:
        controlplane(env, "db", "upgrade")
        key = bench_key(env)
        scripts = {}
        for label, path in (("baseline", "/baseline/send"), ("ours", "/api/v1/send/message")):
            script = Path(data_dir) / f"{label}.lua"
            script.write_text(LUA % {"path": path, "key": key})
            scripts[label] = script
        with gunicorn("bench.apps:make_insert_baseline()", env, args.workers, probe="/baseline/health") as base_url, \
                gunicorn("controlplane.wsgi:app", env, args.workers) as ours_url:
            ratio = alternate({"baseline": base_url, "ours": ours_url}, args, scripts)
        print(f"accept ratio (median): {ratio:.3f}  target >= 0.75  {'PASS' if ratio >= 0.75 else 'FAIL'}")
    finally:
        drop()


def dispatch(args) -> None:
    database_url, drop = fresh_database()
    data_dir = tempfile.mkdtemp(prefix="bench-dispatch-")
    # The double runs in its own process, so it does not share this process's GIL.
    double = subprocess.Popen([sys.executable, "-m", "tests.doubles.postal", str(args.postal_ms)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    postal_url, postal_key = double.stdout.readline().split()
    env = {**environment(database_url, data_dir), "POSTAL_API_URL": postal_url, "POSTAL_API_KEY": postal_key,
           "POSTAL_TRANSPORT": "http", "DELIVERY_INTERVAL_SECONDS": "0.2",
           **({"DELIVERY_CONCURRENCY": str(args.concurrency)} if args.concurrency else {})}
    try:
        controlplane(env, "db", "upgrade")
        key = bench_key(env)
        _queue(env, key, args.messages)
        engine = create_engine(database_url, poolclass=NullPool)
        worker = subprocess.Popen([sys.executable, "-m", "controlplane", "worker"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started, peak_rss = time.monotonic(), 0
        try:
            while True:
                with engine.connect() as conn:
                    done = conn.execute(text("SELECT count(*) FROM messages WHERE state IN ('sent', 'failed')")).scalar()
                peak_rss = max(peak_rss, _rss_kib(worker.pid))
                if done >= args.messages:
                    break
                if time.monotonic() - started > 600:
                    raise RuntimeError(f"only {done} of {args.messages} sent after 600 s")
                time.sleep(0.05)
            elapsed = time.monotonic() - started
        finally:
            worker.terminate()
            worker.wait(30)
        with engine.connect() as conn:
            failed = conn.execute(text("SELECT count(*) FROM messages WHERE state = 'failed'")).scalar()
        rate = args.messages / elapsed
        print(f"dispatch: {args.messages} messages in {elapsed:.1f}s = {rate:.0f} msg/s (Postal answers in "
              f"{args.postal_ms} ms); failed {failed}; worker peak RSS {peak_rss / 1024:.0f} MiB")
        print(f"dispatch rate: {rate:.0f} msg/s  target >= 300  {'PASS' if rate >= 300 else 'FAIL'}")
    finally:
        double.kill()
        drop()


def durability(args) -> None:
    """10,000 sends while Postal goes down for a stretch and the worker is SIGKILLed twice."""
    import signal
    import threading
    from collections import Counter

    sys.path.insert(0, str(ROOT))
    from tests.doubles.postal import PostalDouble

    database_url, drop = fresh_database()
    data_dir = tempfile.mkdtemp(prefix="bench-durability-")
    postal = PostalDouble().start()
    postal.mode, postal.delay = "slow", args.postal_ms / 1000
    env = {**environment(database_url, data_dir), "POSTAL_API_URL": postal.url, "POSTAL_API_KEY": postal.api_key,
           "POSTAL_TRANSPORT": "http", "DELIVERY_INTERVAL_SECONDS": "0.2", "DELIVERY_CLAIM_SECONDS": "5",
           "DELIVERY_BACKOFF_SECONDS": "0.5", "DELIVERY_BACKOFF_MAX_SECONDS": "5", "DELIVERY_MAX_ATTEMPTS": "50"}

    def start_worker():
        return subprocess.Popen([sys.executable, "-m", "controlplane", "worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        controlplane(env, "db", "upgrade")
        key = bench_key(env)
        sender = threading.Thread(target=_queue, args=(env, key, args.messages))
        worker = start_worker()
        sender.start()
        engine = create_engine(database_url, poolclass=NullPool)

        def sent_count():
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM messages WHERE state = 'sent'")).scalar()

        timeline = []
        # Each step waits for a share of the mail to be sent; Postal comes back after 5 s down.
        for fraction, action in ((0.15, "kill"), (0.35, "postal-down"), (None, "postal-up"), (0.65, "kill")):
            if fraction is None:
                time.sleep(5)
            while fraction is not None and sent_count() < args.messages * fraction:
                time.sleep(0.05)
            if action == "kill":
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = start_worker()
            elif action == "postal-down":
                postal.mode = "error500"
            else:
                postal.mode = "slow"
            timeline.append(f"{action} at {sent_count()} sent")
        sender.join()
        deadline = time.monotonic() + 900
        while sent_count() < args.messages and time.monotonic() < deadline:
            time.sleep(0.2)
        worker.terminate()
        worker.wait(30)
        with engine.connect() as conn:
            states = dict(conn.execute(text("SELECT state, count(*) FROM messages GROUP BY state")).all())
        total = sum(states.values())
        seen = Counter(a for call in postal.sent for a in call["params"]["to"])
        duplicated = sum(1 for n in seen.values() if n > 1)
        lost = args.messages - states.get("sent", 0) - states.get("failed", 0)
        print(f"durability: accepted {total}, delivered to Postal {states.get('sent', 0)}, failed "
              f"{states.get('failed', 0)}, lost {lost}, duplicated at Postal {duplicated} "
              f"({'; '.join(timeline)})")
        print(f"lost: {lost}  target 0  {'PASS' if lost == 0 and total == args.messages else 'FAIL'}")
    finally:
        postal.stop()
        drop()


def _queue(env, key, count) -> None:
    """Accept `count` messages through the real app (in-process), so they are stored as in production."""
    from controlplane import create_app

    app = create_app(env)
    client = app.test_client()
    for i in range(count):
        body = {"to": [f"user{i}@example.com"], "from": "agent@mailgoat.dev", "plain_body": "hello"}
        response = client.post("/api/v1/send/message", json=body, headers={"X-Server-API-Key": key})
        assert response.status_code == 200, response.get_json()


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["accept", "dispatch", "durability"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--postal-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, help="DELIVERY_CONCURRENCY for the worker (default: setting)")
    args = parser.parse_args()
    if args.benchmark == "durability" and args.messages == 3000:
        args.messages = 10_000
    {"accept": accept, "dispatch": dispatch, "durability": durability}[args.benchmark](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
