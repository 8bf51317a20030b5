"""Physical backups with point-in-time recovery, on a throwaway cluster started as `postgres`:
pg_basebackup + pg_receivewal, restore to a moment between two writes, find exactly the first."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import select

from controlplane.backups.engines.pg_physical import postgres_bindir, stop_server
from controlplane.backups.models import Backup
from controlplane.backups.operations import BackupError, restore_backup, take_backup
from controlplane.backups.wal import WalReceiver, bundle_finished_hours, seal_spool
from controlplane.extensions import db
from tests.conftest import free_port, wait_for
from tests.pgcluster import Cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster():
    try:
        postgres_bindir()
    except Exception as exc:
        if os.environ.get("CONTROLPLANE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL server binaries are required: {exc}")
        pytest.skip(str(exc))
    # Outside pytest's private temp dir: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="cp-cluster-"))
    root.chmod(0o755)
    instance = Cluster(root / "primary", free_port()).init().start()
    connection = psycopg2.connect(instance.url())
    connection.autocommit = True
    connection.cursor().execute("CREATE DATABASE controlplane")
    connection.close()
    yield instance
    instance.destroy()
    for restored in root.glob("restored*"):
        stop_server(restored)
    shutil.rmtree(root, ignore_errors=True)


def lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def execute(url: str, sql: str):
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


@pytest.fixture
def physical(make_app, cluster):
    app = make_app(DATABASE_URL=cluster.url("controlplane"), BACKUP_ENGINE="pg_physical")
    receiver = WalReceiver(app.extensions["controlplane.settings"])
    receiver.ensure_running()
    yield app, receiver
    receiver.stop()


def archived_through(app, lsn_segment_sql: str, cluster) -> None:
    """Switch WAL and wait until the receiver and sealing have that segment in the catalog."""
    segment = execute(cluster.url("controlplane"), f"SELECT pg_walfile_name({lsn_segment_sql})")[0][0]
    execute(cluster.url("controlplane"), "SELECT pg_switch_wal()")
    settings = app.extensions["controlplane.settings"]

    def sealed():
        with app.app_context():
            seal_spool(settings)
            db.session.remove()
            return db.session.execute(select(Backup).where(Backup.name == f"wal-{segment}")).scalar_one_or_none()

    wait_for(sealed, timeout=30, interval=0.2)


def test_point_in_time_restore_finds_exactly_the_first_write(physical, cluster):
    app, receiver = physical
    settings = app.extensions["controlplane.settings"]
    url = cluster.url("controlplane")
    execute(url, "CREATE TABLE pitr_notes (note text NOT NULL)")
    with app.app_context():
        full = take_backup(settings, "full")
        assert [a["name"] for a in full.artefact_list] == ["base.tar"] and full.size_bytes > 0
        assert full.timeline == 1 and lsn(full.lsn_start) <= lsn(full.lsn_end)
        full_id = full.id
    execute(url, "INSERT INTO pitr_notes VALUES ('first')")
    time.sleep(1.0)
    between = datetime.now(timezone.utc)
    time.sleep(1.0)
    execute(url, "INSERT INTO pitr_notes VALUES ('second')")
    archived_through(app, "pg_current_wal_lsn()", cluster)
    target = cluster.root.parent / "restored"
    with app.app_context():
        # The hour "ends": completed segments move into one incremental bundle.
        bundle = bundle_finished_hours(settings, now=datetime.now(timezone.utc) + timedelta(hours=1))
        assert bundle.kind == "incremental" and bundle.parent_id == full_id
        assert len(bundle.artefact_list[0]["segments"]) >= 2
        left = db.session.execute(select(Backup.name).where(Backup.kind == "wal")).scalars().all()
        assert all(name.endswith(".partial") for name in left)
        report = restore_backup(settings, db.session.get(Backup, full_id), None, target_dir=target, to_time=between)
    assert report.url and report.seconds > 0
    restored = report.url.rsplit("/", 1)[0] + "/controlplane"
    assert execute(restored, "SELECT note FROM pitr_notes ORDER BY note") == [("first",)]
    assert execute(restored, "SELECT pg_is_in_recovery()") == [(False,)]


def test_a_missing_wal_segment_stops_the_restore_before_the_directory_exists(physical, cluster):
    app, receiver = physical
    settings = app.extensions["controlplane.settings"]
    url = cluster.url("controlplane")
    with app.app_context():
        full_id = take_backup(settings, "full").id
    for _ in range(3):  # three more segments, each with a write
        execute(url, "CREATE TABLE IF NOT EXISTS filler (n int); INSERT INTO filler VALUES (1)")
        archived_through(app, "pg_current_wal_lsn()", cluster)
    with app.app_context():
        segments = sorted(db.session.execute(select(Backup).where(Backup.kind == "wal", ~Backup.name.like("%.partial")))
                          .scalars(), key=lambda b: b.name)
        missing = segments[len(segments) // 2]
        gone = missing.name.removeprefix("wal-")
        db.session.delete(missing)
        db.session.commit()
        target = cluster.root.parent / "restored-gap"
        with pytest.raises(BackupError, match=f"WAL segment {gone} is missing from the archive"):
            restore_backup(settings, db.session.get(Backup, full_id), None, target_dir=target)
    assert not target.exists()


def test_a_backup_from_another_major_version_is_refused(physical, cluster):
    app, _ = physical
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        full = take_backup(settings, "full")
        full.server_version_num, full.server_version = 990001, "PostgreSQL 99.1"
        db.session.commit()
        target = cluster.root.parent / "restored-version"
        with pytest.raises(BackupError, match="PostgreSQL 99 server binaries are not installed here"):
            restore_backup(settings, full, None, target_dir=target)
    assert not target.exists()


def test_physical_restores_need_a_directory_and_a_time_after_the_base(physical, cluster):
    app, _ = physical
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        full = take_backup(settings, "full")
        with pytest.raises(BackupError, match="--target-dir DIR"):
            restore_backup(settings, full, None)
        with pytest.raises(BackupError, match="must come after the base backup"):
            restore_backup(settings, full, None, target_dir=cluster.root.parent / "x",
                           to_time=datetime(2020, 1, 1, tzinfo=timezone.utc))


def test_the_drill_recovers_a_physical_backup_and_reads_every_table(physical, cluster):
    from controlplane.backups.drill import run_drill

    app, _ = physical
    settings = app.extensions["controlplane.settings"]
    url = cluster.url("controlplane")
    execute(url, "CREATE TABLE drilled (n int); INSERT INTO drilled SELECT generate_series(1, 100)")
    with app.app_context():
        take_backup(settings, "full")
    archived_through(app, "pg_current_wal_lsn()", cluster)
    with app.app_context():
        drill = run_drill(settings)
        assert drill.ok, drill.detail
        assert "tables readable" in drill.detail and drill.rto_seconds > 0


def test_a_physical_backup_restores_from_storage_alone(physical, cluster, postgres_url, base_env):
    """The catalog's database is gone: a new, empty one, the storage and the key are enough."""
    import base64
    import json

    from click.testing import CliRunner

    from controlplane.cli import main

    app, _ = physical
    settings = app.extensions["controlplane.settings"]
    url = cluster.url("controlplane")
    execute(url, "CREATE TABLE dr_notes (note text NOT NULL)")
    with app.app_context():
        full = take_backup(settings, "full").name
    execute(url, "INSERT INTO dr_notes VALUES ('after the base backup')")
    archived_through(app, "pg_current_wal_lsn()", cluster)
    with app.app_context():
        assert bundle_finished_hours(settings, now=datetime.now(timezone.utc) + timedelta(hours=1)) is not None
    env = {**base_env, "DATABASE_URL": postgres_url, "BACKUP_ENGINE": "pg_physical",
           "BACKUP_DIR": str(settings.backup_dir),
           "BACKUP_ENCRYPTION_KEY": base64.b64encode(settings.backup_encryption_key).decode()}
    listed = json.loads(CliRunner().invoke(main, ["backup", "list", "--json"], env=env).stdout)
    kinds = {row["kind"] for row in listed if not row["in_catalog"]}
    assert {"full", "incremental"} <= kinds and len(listed) == len([r for r in listed if not r["in_catalog"]])
    target = cluster.root.parent / "restored-storage"
    result = CliRunner().invoke(main, ["backup", "restore", full, "--target-dir", str(target), "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "the recovered server is running" in result.output
    restored = f"postgresql://postgres@127.0.0.1:{result.output.split('127.0.0.1:')[1].split('/')[0]}/controlplane"
    assert execute(restored, "SELECT note FROM dr_notes") == [("after the base backup",)]
    # Once the new database is migrated, the catalog is rebuilt from storage, WAL linked to its base.
    assert CliRunner().invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    rebuilt = CliRunner().invoke(main, ["backup", "catalog", "rebuild"], env=env)
    assert rebuilt.exit_code == 0 and f"imported {len(listed)} backup(s)" in rebuilt.output, rebuilt.output
    catalogued = json.loads(CliRunner().invoke(main, ["backup", "list", "--json"], env=env).stdout)
    base_id = next(row["id"] for row in catalogued if row["name"] == full)
    assert all(row["in_catalog"] for row in catalogued)
    assert {row["parent_id"] for row in catalogued if row["kind"] == "incremental"} == {base_id}
