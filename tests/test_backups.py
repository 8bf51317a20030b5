"""Backup and restore round trips on both engines, tamper cases, key rotation, drills and metrics.

Each test runs once per engine: SQLite's online backup API, and pg_dump on a throwaway PostgreSQL
database (so both are exercised whichever database the suite itself uses).
"""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from controlplane.backups.drill import run_drill
from controlplane.backups.models import Backup
from controlplane.backups.operations import BackupError, find_backup, restore_backup, take_backup, verify_backup
from controlplane.extensions import db
from controlplane.gateway.models import Message
from tests.conftest import new_key

BODY = {"to": ["ada@example.com"], "from": "agent@mailgoat.dev", "subject": "kept", "plain_body": "row"}


@pytest.fixture(params=["sqlite", "postgres"])
def engine_app(request, make_app, tmp_path):
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'live.db'}"
    app = make_app(DATABASE_URL=url)
    app.engine_kind = request.param
    return app


@pytest.fixture
def target_url(engine_app, tmp_path, request):
    """A database that does not exist yet, on the engine under test (dropped afterwards)."""
    if engine_app.engine_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'restored' / 'target.db'}"
    databases = request.getfixturevalue("postgres_databases")
    name = f"cp_test_{uuid.uuid4().hex[:12]}"
    databases.created.append(name)
    return make_url(str(databases.admin.url)).set(database=name).render_as_string(hide_password=False)


def seed(app, count: int = 5) -> None:
    key, client = new_key(app), app.test_client()
    for i in range(count):
        assert client.post("/api/v1/send/message", json={**BODY, "subject": f"kept {i}"},
                           headers={"X-Server-API-Key": key}).status_code == 200


def settings(app):
    return app.extensions["controlplane.settings"]


def live_checksums(app) -> dict:
    from controlplane.backups.engines import engine_for

    return engine_for(settings(app)).checksums(settings(app).database_url)


def message_count(app) -> int:
    with app.app_context():
        db.session.remove()
        return db.session.execute(select(func.count()).select_from(Message)).scalar_one()


def test_backup_destroy_restore_in_place_gives_identical_tables(engine_app):
    seed(engine_app)
    with engine_app.app_context():
        row = take_backup(settings(engine_app), "manual")
        assert row.status == "succeeded" and row.size_bytes > 0 and row.tables
        recorded, backup_id = row.tables, row.id
        before = live_checksums(engine_app)
        db.session.execute(text("DELETE FROM message_recipients"))
        db.session.execute(text("DELETE FROM events"))
        db.session.execute(text("DELETE FROM messages"))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
        report = restore_backup(settings(engine_app), find_backup(backup_id), None, in_place=True)
    # Compared: every table but the catalog, which an in-place restore keeps as it is now.
    assert report.problems == [] and report.tables == len(recorded) - 2
    assert message_count(engine_app) == 5
    with engine_app.app_context():  # the catalog still knows the backup (it was "running" inside it)
        assert find_backup(backup_id).status == "succeeded"
    after = live_checksums(engine_app)
    # The catalog rows written after the backup (its own row) are the only difference.
    assert {t: v for t, v in after.items() if "backups" not in t and "restore_drills" not in t} == \
           {t: v for t, v in before.items() if "backups" not in t and "restore_drills" not in t}


def test_restore_into_a_new_database_then_refuse_a_non_empty_one(engine_app, target_url):
    seed(engine_app, 3)
    with engine_app.app_context():
        row = take_backup(settings(engine_app), "full")
        report = restore_backup(settings(engine_app), row, target_url)
        assert report.problems == [] and report.seconds > 0
        with pytest.raises(BackupError, match="already holds .* tables"):
            restore_backup(settings(engine_app), row, target_url)
        with pytest.raises(BackupError, match="--target-url URL .* or --in-place"):
            restore_backup(settings(engine_app), row, None)


def _sealed_file(app, row: Backup) -> Path:
    name = "database.sqlite" if row.engine == "sqlite" else "database.dump"
    return settings(app).backup_dir / row.name / f"{name}.sealed"


def _target_exists(app, url: str) -> bool:
    if url.startswith("sqlite"):
        return Path(url[len("sqlite:///"):]).exists()
    from sqlalchemy import create_engine

    admin = create_engine(make_url(url).set(database="postgres"))
    with admin.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                             {"n": make_url(url).database}).first()
    admin.dispose()
    return found is not None


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing object"])
def test_damaged_backups_stop_the_restore_before_the_target_is_touched(engine_app, target_url, damage):
    seed(engine_app, 2)
    with engine_app.app_context():
        row = take_backup(settings(engine_app), "manual")
        path = _sealed_file(engine_app, row)
        blob = bytearray(path.read_bytes())
        if damage == "flipped byte":
            blob[len(blob) // 2] ^= 0x40
            path.write_bytes(bytes(blob))
        elif damage == "truncated":
            path.write_bytes(bytes(blob[: len(blob) - 40]))
        else:
            path.unlink()
        expected = {"flipped byte": "failed authentication", "truncated": "cut short",
                    "missing object": "does not exist"}[damage]
        with pytest.raises(BackupError, match=f"backup {row.name}, .*{expected}"):
            restore_backup(settings(engine_app), row, target_url)
        with pytest.raises(BackupError, match=expected):
            verify_backup(settings(engine_app), row)
        assert row.verify_ok is False and expected in row.verify_error
    assert not _target_exists(engine_app, target_url)


def test_a_wrong_key_stops_the_restore_and_previous_keys_still_open_old_backups(engine_app, make_app, target_url):
    import base64
    import os

    old_key, new_key_ = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    database_url = settings(engine_app).database_url
    before = make_app(DATABASE_URL=database_url, BACKUP_ENCRYPTION_KEY=old_key)
    seed(before, 1)
    with before.app_context():
        name = take_backup(settings(before), "manual").name
    wrong = make_app(DATABASE_URL=database_url, BACKUP_ENCRYPTION_KEY=new_key_, migrate=False)
    with wrong.app_context():
        with pytest.raises(BackupError, match="sealed with key .* neither BACKUP_ENCRYPTION_KEY"):
            restore_backup(settings(wrong), find_backup(name), target_url)
    assert not _target_exists(engine_app, target_url)
    rotated = make_app(DATABASE_URL=database_url, BACKUP_ENCRYPTION_KEY=new_key_,
                       BACKUP_ENCRYPTION_KEYS_PREVIOUS=old_key, migrate=False)
    with rotated.app_context():
        assert restore_backup(settings(rotated), find_backup(name), target_url).problems == []
        assert take_backup(settings(rotated), "manual").key_id != find_backup(name).key_id


def test_a_backup_from_a_newer_postgresql_is_refused_before_writing(make_app, postgres_url, postgres_databases):
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        row = take_backup(settings(app), "manual")
        row.server_version_num, row.server_version = 990001, "PostgreSQL 99.1"
        db.session.commit()
        name = f"cp_test_{uuid.uuid4().hex[:12]}"
        postgres_databases.created.append(name)
        target = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        with pytest.raises(BackupError, match="from PostgreSQL 99.1, the target runs PostgreSQL 15"):
            restore_backup(settings(app), row, target)
    assert not _target_exists(app, target)


def test_postgres_backup_keeps_roles_and_records_the_lsn(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        row = take_backup(settings(app), "full")
        assert [a["name"] for a in row.artefact_list] == ["globals.sql", "database.dump"]
        assert row.lsn_end and "/" in row.lsn_end and row.server_version.startswith("PostgreSQL")


def test_failed_backups_are_recorded_and_leave_nothing_behind(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'live.db'}")
    with app.app_context():
        (tmp_path / "live.db").rename(tmp_path / "moved.db")  # the engine cannot find the file
        with pytest.raises(BackupError, match="failed: .*does not exist"):
            take_backup(settings(app), "manual")
        (tmp_path / "moved.db").rename(tmp_path / "live.db")
        db.session.remove()
        row = db.session.execute(select(Backup)).scalar_one()
        assert row.status == "failed" and "does not exist" in row.error
        assert not any(settings(app).backup_dir.glob("**/*.sealed"))


def test_the_drill_passes_on_a_good_backup_and_fails_on_a_damaged_one(engine_app):
    seed(engine_app, 2)
    with engine_app.app_context():
        row = take_backup(settings(engine_app), "full")
        drill = run_drill(settings(engine_app))
        assert drill.ok and drill.backup_id == row.id and drill.rto_seconds > 0 and "tables match" in drill.detail
        path = _sealed_file(engine_app, row)
        blob = bytearray(path.read_bytes())
        blob[100] ^= 1
        path.write_bytes(bytes(blob))
        failed = run_drill(settings(engine_app))
        assert failed.ok is False and "failed authentication" in failed.detail
    metrics = engine_app.test_client().get("/metrics").get_data(as_text=True)
    assert "controlplane_backup_drill_success 0.0" in metrics
    assert 'controlplane_backup_last_success_timestamp_seconds{kind="full"}' in metrics
    assert 'controlplane_backup_last_size_bytes{kind="full"}' in metrics
    assert "controlplane_backup_rpo_seconds " in metrics


def test_no_backup_means_a_failed_drill_not_a_crash(app):
    with app.app_context():
        drill = run_drill(settings(app))
        assert drill.ok is False and drill.detail == "no succeeded backup to restore"
