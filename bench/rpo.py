"""RPO of the physical engine under a steady write load (issue 4).

    .venv/bin/python -m bench.rpo [--seal-seconds 15] [--disasters 3] [--writes-per-second 50]

Starts a throwaway cluster (as the `postgres` user), migrates it, takes a base backup, and runs
`controlplane worker` with BACKUP_ENGINE=pg_physical (pg_receivewal + sealing every
--seal-seconds). A writer inserts a timestamped row every 1/--writes-per-second s. At a random
moment the "disaster" strikes: the writer stops and the worker's whole process group is
SIGKILLed, so nothing more is sealed. Then the base backup is restored with all sealed WAL into a
new data directory, started, and the newest row found there: the data lost is the time between
that row and the disaster. Repeated --disasters times at random moments.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controlplane.backups.engines.pg_physical import stop_server  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402


def execute(url: str, sql: str, args=None):
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


def controlplane(env, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "controlplane", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"controlplane {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Writer(threading.Thread):
    def __init__(self, url: str, per_second: float):
        super().__init__(daemon=True)
        self.url, self.interval = url, 1 / per_second
        self.stop = threading.Event()
        self.last_committed: datetime | None = None

    def run(self) -> None:
        connection = psycopg2.connect(self.url)
        connection.autocommit = True
        cursor = connection.cursor()
        while not self.stop.is_set():
            cursor.execute("INSERT INTO rpo_probe (at) VALUES (clock_timestamp()) RETURNING at")
            self.last_committed = cursor.fetchone()[0]
            time.sleep(self.interval)
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seal-seconds", type=float, default=15)
    parser.add_argument("--disasters", type=int, default=3)
    parser.add_argument("--writes-per-second", type=float, default=50)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-rpo-"))
    root.chmod(0o755)
    cluster = Cluster(root / "primary", free_port()).init().start()
    execute(cluster.url(), "CREATE DATABASE controlplane")
    url = cluster.url("controlplane")
    env = {**os.environ, "APP_ENV": "development", "DATA_DIR": str(root / "data"), "DATABASE_URL": url,
           "LOG_LEVEL": "WARNING", "BACKUP_ENCRYPTION_KEY": "ab" * 32, "BACKUP_ENGINE": "pg_physical",
           "BACKUP_WAL_SEAL_SECONDS": str(args.seal_seconds), "LEADER_POLL_SECONDS": "1",
           "BACKUP_WORK_DIR": str(root), "PYTHONPATH": str(ROOT)}
    losses = []
    try:
        controlplane(env, "db", "upgrade")
        execute(url, "CREATE TABLE rpo_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL)")
        for number in range(1, args.disasters + 1):
            worker = subprocess.Popen([sys.executable, "-m", "controlplane", "worker"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(3)  # the leader starts pg_receivewal
            if number == 1:
                backup_id = controlplane(env, "backup", "run", "--kind", "full").split()[1]
            writer = Writer(url, args.writes_per_second)
            writer.start()
            time.sleep(args.seal_seconds * 2 + random.uniform(0, args.seal_seconds))
            writer.stop.set()
            writer.join()
            disaster = writer.last_committed
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pg_receivewal, mid-interval
            worker.wait()
            target = root / f"restored-{number}"
            output = controlplane(env, "backup", "restore", backup_id, "--target-dir", str(target), "--yes")
            restored_url = output.split("running: ")[1].split()[0].rsplit("/", 1)[0] + "/controlplane"
            newest = execute(restored_url, "SELECT max(at) FROM rpo_probe")[0][0]
            stop_server(target)
            shutil.rmtree(target, ignore_errors=True)
            lost = (disaster - newest).total_seconds()
            rows_lost = execute(url, "SELECT count(*) FROM rpo_probe WHERE at > %s", (newest,))[0][0]
            losses.append(lost)
            print(f"  disaster {number}: last write {disaster:%H:%M:%S.%f}, newest restored {newest:%H:%M:%S.%f}: "
                  f"{lost:.1f} s of writes lost ({rows_lost} rows)")
        print(f"RPO under {args.writes_per_second:g} writes/s with WAL sealed every {args.seal_seconds:g} s: "
              f"median {statistics.median(losses):.1f} s, worst {max(losses):.1f} s (bound: the seal interval)")
        return 0
    finally:
        cluster.destroy()
        for leftover in root.glob("restored-*"):
            stop_server(leftover)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
