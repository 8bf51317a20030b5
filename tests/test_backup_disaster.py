"""The plan's emergency rollback, from storage alone (docs/restore.md), with real processes on
PostgreSQL: gunicorn serves a message sent with an API key, `controlplane backup run` backs it up,
the service stops and the database is dropped; a machine with a new data directory, the storage
settings and the key (and the service's own secrets) restores into an empty database through
the CLI, and a new gunicorn serves the old message to the old key."""
from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from controlplane.settings import PROJECT_ROOT
from tests.conftest import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def controlplane(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "controlplane", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"controlplane {' '.join(args)}:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


class Gunicorn:
    def __init__(self, env: dict, metrics_dir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        # Its log goes to a file: a pipe nobody reads would block gunicorn once it filled.
        self.log = metrics_dir.with_suffix(".log")
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_ROOT / "gunicorn.conf.py")], cwd=PROJECT_ROOT,
            env={**env, "PORT": str(self.port), "WEB_CONCURRENCY": "1", "GUNICORN_ACCESS_LOG": "/dev/null",
                 "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            stdout=subprocess.DEVNULL, stderr=self._log_file)

    def __enter__(self):
        wait_for(self._answers, timeout=40, interval=0.2)
        return self

    def _answers(self) -> bool:
        """/live (no worker runs here, so /ready would wait for one)."""
        assert self.process.poll() is None, self.log.read_text(errors="replace")[-3000:]
        try:
            return httpx.get(self.url + "/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def drop_and_recreate(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def test_the_service_comes_back_with_its_data_after_the_database_is_dropped(postgres_url, base_env, tmp_path):
    # What the operator keeps off the machine: the service's secrets, the storage and the key.
    secrets_env = {"API_KEY_SALT": secrets.token_hex(32), "JWT_SECRET": secrets.token_hex(32),
                   "BACKUP_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
                   "BACKUP_DIR": str(tmp_path / "storage")}
    before = {**os.environ, **base_env, **secrets_env, "DATABASE_URL": postgres_url, "LOG_LEVEL": "WARNING",
              "DATA_DIR": str(tmp_path / "machine-1")}
    controlplane(before, "db", "upgrade")
    key = next(line.split()[1] for line in controlplane(before, "keys", "create", "--name", "agent").splitlines()
               if line.startswith("key "))
    headers = {"X-Server-API-Key": key}
    with Gunicorn(before, tmp_path / "metrics-1") as web:
        sent = httpx.post(web.url + "/api/v1/send/message", headers=headers, timeout=10, json={
            "to": ["ada@example.com"], "from": "agent@mailgoat.dev", "subject": "before the disaster",
            "plain_body": "kept"})
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["data"]["message_id"]
    assert "succeeded" in controlplane(before, "backup", "run")

    drop_and_recreate(postgres_url)  # the disaster: nothing is left of the database

    # Another machine: a new data directory, an empty database, the same settings and key.
    after = {**before, "DATA_DIR": str(tmp_path / "machine-2")}
    listed = json.loads(controlplane(after, "backup", "list", "--json"))
    assert [(row["kind"], row["in_catalog"]) for row in listed] == [("full", False)]
    restored = controlplane(after, "backup", "restore", listed[0]["name"], "--in-place", "--yes")
    assert "tables match the row counts and checksums recorded at backup time" in restored
    controlplane(after, "db", "upgrade")  # what the rolled-back release's release_command runs
    with Gunicorn(after, tmp_path / "metrics-2") as web:
        read = httpx.post(web.url + "/api/v1/messages/message", headers=headers, timeout=10,
                          json={"id": message_id, "_expansions": ["details", "plain_body"]})
        assert read.status_code == 200, read.text
        data = read.json()["data"]
        assert data["details"]["subject"] == "before the disaster", data
        assert data["plain_body"] == "kept"
    # The catalog knows storage again.
    assert [(row["name"], row["in_catalog"], row["status"]) for row in
            json.loads(controlplane(after, "backup", "list", "--json"))] == [(listed[0]["name"], True, "succeeded")]
