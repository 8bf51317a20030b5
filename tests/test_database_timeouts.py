"""A PostgreSQL server that goes silent: waits end within the answer deadline, the lost connection is
discarded, and the leader gives up its lock and takes it again (controlplane/database.py).

The silence is the TCP proxy double's (tests/doubles/tcp_proxy.py): PostgreSQL's side of each
open connection is closed, and the client is told nothing while its packets are still acknowledged.
That is the case keepalives cannot end. The PostgreSQL tests install the wait callback the way
web and worker do, and restore the previous one afterwards.
"""
from __future__ import annotations

import time

import pytest
from psycopg2 import extensions
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from controlplane.database import ServerSilent, install_answer_deadline, service_connect_args
from controlplane.extensions import db
from controlplane.jobs.leader import LOCK_KEY, LeaderElection
from controlplane.settings import Settings, SettingsError
from tests.doubles.tcp_proxy import TcpProxy

# Short enough for a fast test, in the same order as the defaults (30 s, 35 s, 5 s).
FAST = {"DB_STATEMENT_TIMEOUT_MS": "1000", "DB_ANSWER_TIMEOUT_SECONDS": "2", "DB_CONNECT_TIMEOUT_SECONDS": "1"}
ANSWER_SECONDS = 2.0


@pytest.fixture
def proxy(postgres_url):
    proxy = TcpProxy.for_database(postgres_url)
    yield proxy
    proxy.stop()


@pytest.fixture
def answer_deadline(tmp_path):
    """The deadline installed for this process, as `controlplane worker` installs it."""
    previous = extensions.get_wait_callback()
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql://x@h/d", **FAST})
    install_answer_deadline(settings)
    yield
    extensions.set_wait_callback(previous)


@pytest.fixture
def proxied_app(make_app, proxy, postgres_url, answer_deadline):
    """An app whose pool reaches PostgreSQL through the proxy, with the deadline installed."""
    return make_app(DATABASE_URL=proxy.url_for(postgres_url), **FAST)


def select_one(app) -> int:
    with app.app_context():
        try:
            return db.session.execute(text("SELECT 1")).scalar_one()
        finally:
            db.session.remove()


def lock_is_held(direct_url: str) -> bool:
    """In this test's database: other installs on the server take the same lock in theirs."""
    engine = create_engine(direct_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                     "AND classid::bigint = :high AND objid::bigint = :low "
                                     "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                                {"high": LOCK_KEY >> 32, "low": LOCK_KEY & 0xFFFF_FFFF}).scalar_one() > 0
    finally:
        engine.dispose()


# ---------------------------------------------------------------- the setting


def test_answer_deadline_defaults_to_the_statement_timeout_plus_a_margin(tmp_path):
    assert Settings.from_env({"DATA_DIR": str(tmp_path)}).db_answer_timeout == 35.0
    assert Settings.from_env({"DATA_DIR": str(tmp_path), "DB_STATEMENT_TIMEOUT_MS": "60000"}).db_answer_timeout == 65.0


def test_no_statement_timeout_means_no_answer_deadline_unless_one_is_set(tmp_path):
    unbounded = {"DATA_DIR": str(tmp_path), "DB_STATEMENT_TIMEOUT_MS": "0"}
    assert Settings.from_env(unbounded).db_answer_timeout == 0
    assert Settings.from_env({**unbounded, "DB_ANSWER_TIMEOUT_SECONDS": "120"}).db_answer_timeout == 120


def test_answer_deadline_within_the_statement_timeout_is_refused_naming_both(tmp_path):
    with pytest.raises(SettingsError, match="DB_ANSWER_TIMEOUT_SECONDS must be longer than DB_STATEMENT_TIMEOUT_MS"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "DB_ANSWER_TIMEOUT_SECONDS": "30"})


def test_every_service_connection_gets_keepalives_and_tcp_user_timeout(tmp_path):
    args = service_connect_args(Settings.from_env({"DATA_DIR": str(tmp_path)}), "controlplane:test")
    assert args["keepalives"] == 1 and args["keepalives_idle"] > 0 and args["tcp_user_timeout"] > 0
    assert args["options"] == "-c statement_timeout=30000"


# ---------------------------------------------------------------- a silent server


@pytest.mark.postgres
def test_a_query_on_a_silent_connection_raises_within_the_deadline_and_the_next_checkout_works(proxied_app, proxy):
    app = proxied_app
    with app.app_context():
        assert db.session.execute(text("SELECT 1")).scalar_one() == 1  # holds a connection, as a job does
        proxy.silence()
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            db.session.execute(text("SELECT 1"))
        waited = time.monotonic() - started
        db.session.remove()
    assert isinstance(raised.value.orig, ServerSilent)
    assert raised.value.connection_invalidated, "the lost connection is discarded, not pooled again"
    assert ANSWER_SECONDS <= waited < ANSWER_SECONDS + 1.5
    proxy.restore()
    assert select_one(app) == 1


@pytest.mark.postgres
def test_a_checkout_while_the_server_is_silent_fails_within_ping_and_connect_deadlines(proxied_app, proxy):
    app = proxied_app
    assert select_one(app) == 1  # leaves a connection in the pool
    proxy.silence()
    started = time.monotonic()
    with pytest.raises(OperationalError):
        select_one(app)  # the pre-ping waits out the deadline, the new connection its connect_timeout
    assert time.monotonic() - started < ANSWER_SECONDS + 1 + 1.5
    proxy.restore()
    assert select_one(app) == 1


@pytest.mark.postgres
def test_a_statement_past_the_statement_timeout_is_cancelled_by_the_server_not_the_deadline(proxied_app):
    app = proxied_app
    with app.app_context():
        # A short sleep comes back whole: neither the server nor the deadline ends it.
        assert db.session.execute(text("SELECT 1 FROM pg_sleep(0.5)")).scalar_one() == 1
        with pytest.raises(OperationalError, match="statement timeout"):
            db.session.execute(text("SELECT pg_sleep(5)"))
        db.session.remove()


@pytest.mark.postgres
def test_the_leader_loses_its_lock_when_the_server_goes_silent_and_takes_it_again(
        proxy, postgres_url, answer_deadline, tmp_path):
    settings = Settings.from_env({"DATA_DIR": str(tmp_path), "DATABASE_URL": postgres_url, **FAST})
    leader = LeaderElection(proxy.url_for(postgres_url), service_connect_args(settings, "controlplane-leader"))
    try:
        assert leader.poll() is True
        proxy.silence()  # PostgreSQL ends the lock's session; the leader hears nothing
        started = time.monotonic()
        assert leader.poll() is False
        # The answer deadline on the lock connection, then one connect attempt that is never answered.
        assert time.monotonic() - started < ANSWER_SECONDS + 1 + 1.5
        assert leader.is_leader is False
        assert not lock_is_held(postgres_url)
        proxy.restore()
        assert leader.poll() is True
        assert lock_is_held(postgres_url)
    finally:
        leader.release()
