"""Retention with a controllable clock: by age, hourly thinning, and what is always kept."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sqlalchemy import select

from controlplane.backups.models import FULL_COPY_KINDS, Backup
from controlplane.backups.operations import take_backup
from controlplane.backups.retention import expired, prune
from controlplane.extensions import db

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
_ids = iter(range(1, 10_000))


def backup(days_ago: float, kind: str = "full", status: str = "succeeded", engine_kind: str = "sqlite",
           **fields) -> Backup:
    finished = NOW - timedelta(days=days_ago)
    number = next(_ids)
    return Backup(id=number, name=f"b{number}", kind=kind, engine=engine_kind, status=status, storage="local",
                  started_at=finished - timedelta(minutes=1), finished_at=finished,
                  **{"pinned": False, "full_copy": kind in FULL_COPY_KINDS, **fields})


def names(rows) -> set[str]:
    return {r.name for r in rows}


def test_backups_older_than_the_window_go_and_newer_ones_stay():
    old, recent = backup(31), backup(29)
    assert expired([old, recent], NOW, 30) == [old]


def test_pinned_and_pre_migration_backups_are_kept_until_unpinned():
    pinned, pre, plain = backup(40, pinned=True), backup(40, kind="pre-migration"), backup(40)
    latest = backup(1)
    assert names(expired([pinned, pre, plain, latest], NOW, 30)) == {plain.name}
    pinned.pinned = False
    assert names(expired([pinned, pre, plain, latest], NOW, 30)) == {plain.name, pinned.name}


def test_a_full_that_a_kept_backup_depends_on_is_kept():
    base = backup(35)
    incremental = backup(20, kind="incremental", parent_id=base.id)
    chained = backup(10, kind="wal", parent_id=incremental.id)
    newer = backup(1)
    assert expired([base, incremental, chained, newer], NOW, 30) == []


def test_the_newest_good_full_survives_a_quiet_month():
    only = backup(45)
    failed = backup(44, status="failed")
    assert expired([only, failed], NOW, 30) == [failed]


def test_the_newest_whole_copy_survives_a_quiet_month_whatever_its_kind():
    full = backup(50)
    manual = backup(45, kind="manual")  # the newest thing a restore could start from
    assert expired([full, manual], NOW, 30) == [full]


def test_hourly_fulls_older_than_two_days_are_thinned_to_one_a_day():
    day = [backup(5 - h / 24) for h in range(24)]  # 24 hourly fulls, five days ago
    recent = [backup(1 - h / 24) for h in range(24)]  # yesterday's: all kept
    gone = expired(day + recent, NOW, 30)
    first_of_day = min(day, key=lambda b: b.finished_at)
    kept_days = {b.finished_at.date() for b in day if b not in gone}
    assert len(gone) == len(day) - len(kept_days) and first_of_day not in gone
    assert not set(gone) & set(recent)


def test_prune_deletes_objects_and_rows_and_dry_run_deletes_nothing(app):
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        old, new = take_backup(settings, "manual"), take_backup(settings, "manual")
        old.finished_at = NOW - timedelta(days=40)
        db.session.commit()
        old_dir = settings.backup_dir / old.name
        assert old_dir.exists()
        assert names(prune(settings, now=NOW, dry_run=True)) == {old.name} and old_dir.exists()
        assert names(prune(settings, now=NOW)) == {old.name}
        assert not old_dir.exists() and (settings.backup_dir / new.name).exists()
        assert [r.name for r in db.session.execute(select(Backup)).scalars()] == [new.name]


def test_wal_since_the_oldest_kept_physical_full_is_kept():
    base = backup(45, engine_kind="pg_physical")
    old_wal = backup(46, kind="wal", engine_kind="pg_physical")
    needed = [backup(40 - d, kind="wal", engine_kind="pg_physical") for d in range(3)]
    gone = expired([base, old_wal, *needed], NOW, 30)
    assert gone == [old_wal]  # base is the newest full, so it and the WAL after it stay


def test_archive_wal_is_idempotent_and_refuses_different_content(app, tmp_path):
    """The archive_command contract: a retry of the same segment succeeds, other bytes are refused."""
    from controlplane.backups.operations import BackupError, archive_wal, fetch_verified

    settings = app.extensions["controlplane.settings"]
    segment = tmp_path / "000000010000000000000003"
    segment.write_bytes(b"\x01" * 70_000)
    with app.app_context():
        first = archive_wal(settings, segment)
        assert archive_wal(settings, segment).id == first.id
        segment.write_bytes(b"\x02" * 70_000)
        with pytest.raises(BackupError, match="archived before with different content"):
            archive_wal(settings, segment)
        replaced = archive_wal(settings, segment, replace=True)  # a partial segment's newer snapshot
        (tmp_path / "out").mkdir()
        restored = fetch_verified(settings, replaced, tmp_path / "out")
        assert restored["000000010000000000000003"].read_bytes() == b"\x02" * 70_000
        assert [r.name for r in db.session.execute(select(Backup)).scalars()] == ["wal-000000010000000000000003"]
