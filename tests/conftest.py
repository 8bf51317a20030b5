"""Shared fixtures.

The database under test is SQLite by default and PostgreSQL when CONTROLPLANE_TEST_DATABASE_URL
points at a server (CI runs the suite both ways). PostgreSQL-only tests use `postgres_url`; they
skip without a server unless CONTROLPLANE_REQUIRE_POSTGRES=1, which CI sets.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from controlplane import create_app
from controlplane.extensions import db
from controlplane.schema import upgrade_database

REQUIRE_POSTGRES = os.environ.get("CONTROLPLANE_REQUIRE_POSTGRES") == "1"
SUITE_DATABASE_URL = os.environ.get("CONTROLPLANE_TEST_DATABASE_URL", "")
POSTGRES_ADMIN_URL = os.environ.get(
    "CONTROLPLANE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):
    """Poll until `predicate` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- PostgreSQL


def _postgres_available() -> str | None:
    """None when the server answers, else why not."""
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class PostgresDatabases:
    """Creates throwaway databases on the test server and drops them at the end of the session."""

    def __init__(self, admin_url: str):
        self.admin = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self) -> str:
        name = f"cp_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(str(self.admin.url)).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases():
    problem = _postgres_available()
    if problem is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (CONTROLPLANE_REQUIRE_POSTGRES=1) but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    databases = PostgresDatabases(POSTGRES_ADMIN_URL)
    yield databases
    databases.drop_all()


@pytest.fixture
def postgres_url(postgres_databases) -> str:
    """A fresh, empty PostgreSQL database for this test."""
    return postgres_databases.create()


# ---------------------------------------------------------------- the app


@pytest.fixture
def database_url(tmp_path, request) -> str:
    """The suite's database for this test: fresh SQLite, or fresh PostgreSQL in the PostgreSQL run."""
    if SUITE_DATABASE_URL.startswith("postgres"):
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'controlplane.db'}"


def development_env(root: Path, database_url: str) -> dict[str, str]:
    """Environment for an app (or a process) under test: development, no outside services configured."""
    return {
        "APP_ENV": "development",
        "DATA_DIR": str(root / "data"),
        "DATABASE_URL": database_url,
        "POSTAL_API_URL": "",
        "POSTAL_API_KEY": "",
        "REDIS_URL": "",
        "SENTRY_DSN": "",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        "LOG_LEVEL": "INFO",
        "HEALTH_CACHE_SECONDS": "0",
        "STATUS_CACHE_SECONDS": "0",
        "INSTANCE_ID": "test-instance",
        # Worker processes started by tests serve no metrics unless a test asks (each on a free port).
        "WORKER_METRICS_PORT": "0",
    }


@pytest.fixture
def base_env(tmp_path, database_url) -> dict[str, str]:
    """Environment for an app under test: development, no outside services configured."""
    return development_env(tmp_path, database_url)


@pytest.fixture
def make_app(base_env):
    """Build a migrated app; keyword arguments are environment overrides."""
    apps = []

    def factory(migrate: bool = True, span_exporter=None, sentry_transport=None, **overrides):
        app = create_app({**base_env, **overrides}, span_exporter=span_exporter, sentry_transport=sentry_transport)
        if migrate:
            with app.app_context():
                upgrade_database()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["controlplane.request_stats"].stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# ---------------------------------------------------------------- gateway personas


def create_api_key(app, scopes="send", **options) -> tuple[int, str]:
    """Create an API key on `app` the way an operator would; returns (row id, key)."""
    from controlplane.gateway.keys import create_key

    with app.app_context():
        new = create_key(app.extensions["controlplane.settings"], name=options.pop("name", f"{scopes} key"),
                         scopes=scopes, actor="test", **options)
        return new.row.id, new.key


def new_key(app, scopes="send", **options) -> str:
    """Just the key, for tests that build their own app."""
    return create_api_key(app, scopes, **options)[1]


@pytest.fixture
def make_key(app):
    """Keys on the default `app` fixture; returns (row id, key)."""
    return lambda scopes="send", **options: create_api_key(app, scopes, **options)


@pytest.fixture
def postal():
    """A running Postal double (tests/doubles/postal.py)."""
    from tests.doubles.postal import PostalDouble

    double = PostalDouble().start()
    yield double
    double.stop()


@pytest.fixture
def admin_key(make_key) -> str:
    return make_key("admin")[1]


@pytest.fixture
def sending_key(make_key) -> str:
    return make_key("send")[1]


@pytest.fixture
def read_only_key(make_key) -> str:
    return make_key("read")[1]


# ---------------------------------------------------------------- real 5xx traffic

POSTAL_DOWN = {"POSTAL_TRANSPORT": "http", "POSTAL_API_URL": "http://127.0.0.1:9", "POSTAL_API_KEY": "k" * 24}


def run_scheduled_checks(app) -> dict[str, str]:
    """One round of every check, the way the worker's health-refresh job runs it: {check: status}."""
    runner = app.extensions["controlplane.health"].make_runner(app, "test-instance:worker")
    try:
        return {outcome.name: outcome.status for outcome in runner.run(force=True)}
    finally:
        runner.shutdown()


def serve_traffic(app, ok: int, failing: int) -> None:
    """Real requests through `app` (built with POSTAL_DOWN): `ok` answered 200, `failing` 503.

    The 503s are reads of delivery attempts, which only Postal knows, for a message Postal
    accepted earlier; Postal is down now, so the gateway answers UpstreamUnavailable.
    """
    from controlplane.gateway.models import MessageRecipient

    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "send")}
    sent = client.post("/api/v1/send/message", json={"to": ["a@example.com"], "from": "x@mailgoat.dev",
                                                     "subject": "s", "plain_body": "b"}, headers=headers).get_json()
    with app.app_context():  # as if the worker had delivered it: Postal gave it an id
        db.session.execute(MessageRecipient.__table__.update().values(postal_id=4242))
        db.session.commit()
    for _ in range(ok - 1):  # the send above was the first 200; probes like /live are not traffic
        assert client.get("/api/v1/openapi.json").status_code == 200
    for _ in range(failing):
        answer = client.post("/api/v1/messages/deliveries", json={"id": sent["message_id"]}, headers=headers)
        assert answer.status_code == 503


S3_BUCKET = "mailgoat-backups"


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A real local S3-compatible server (moto's server mode) with an empty S3_BUCKET."""
    from moto.server import ThreadedMotoServer

    from controlplane.backups.storage.s3 import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    S3Storage(S3_BUCKET, endpoint_url=endpoint).client.create_bucket(Bucket=S3_BUCKET)
    yield endpoint
    import httpx

    httpx.post(f"{endpoint}/moto-api/reset")  # moto keeps buckets per process, not per server
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint) -> dict[str, str]:
    """App settings for backups (and the status copy) in that bucket."""
    return {"BACKUP_STORAGE": "s3", "BACKUP_S3_BUCKET": S3_BUCKET, "BACKUP_S3_ENDPOINT": s3_endpoint}


@pytest.fixture
def receiver():
    """A subscriber's webhook endpoint (tests/doubles/receiver.py), stopped after the test."""
    from tests.doubles.receiver import Receiver

    hook = Receiver()
    yield hook
    hook.stop()
