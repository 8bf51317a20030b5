"""The restore drill: restore the newest backup into a scratch database, compare every table's row
count and checksum with those recorded at backup time, record the result, drop the scratch copy.
"""
from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from ..extensions import db
from ..timeutil import utcnow
from .models import Backup, RestoreDrill
from .operations import BackupError, restore_backup
from .status import latest_full

log = logging.getLogger("controlplane.backups")


def run_drill(settings, backup: Backup | None = None) -> RestoreDrill:
    backup = backup or latest_full()  # WAL restores only with its base backup
    drill = RestoreDrill(backup_id=backup.id if backup else None, started_at=utcnow())
    db.session.add(drill)
    db.session.commit()
    if backup is None:
        drill.ok, drill.finished_at, drill.detail = False, utcnow(), "no succeeded backup to restore"
        db.session.commit()
        return drill
    if backup.engine == "pg_physical":
        return _physical_drill(settings, backup, drill)
    scratch, cleanup = _scratch_target(settings, backup)
    started = time.monotonic()
    try:
        report = restore_backup(settings, backup, scratch)
        drill.rto_seconds = report.seconds
        drill.ok = not report.problems
        drill.detail = ("; ".join(report.problems) if report.problems
                        else f"{report.tables} tables match the backup's row counts and checksums")
    except Exception as exc:  # the drill exists to find exactly this
        drill.ok, drill.detail = False, str(exc)
        drill.rto_seconds = time.monotonic() - started
    finally:
        cleanup()
    drill.finished_at = utcnow()
    db.session.commit()
    (log.info if drill.ok else log.error)("restore drill finished", extra={
        "backup": backup.name, "ok": drill.ok, "rto_seconds": round(drill.rto_seconds or 0, 2), "detail": drill.detail})
    return drill


def _physical_drill(settings, backup: Backup, drill: RestoreDrill) -> RestoreDrill:
    """Recover the base backup with every archived segment into a scratch data directory, start it,
    and read every table the live database has. (A physical copy has no snapshot to compare
    checksums with: the live data has moved on by the time recovery ends.)"""
    from .checksums import postgres_checksums
    from .engines.pg_logical import _connect
    from .engines.pg_physical import stop_server

    folder = Path(tempfile.mkdtemp(prefix="controlplane-drill-", dir=settings.backup_work_dir))
    folder.chmod(0o755)  # the server runs as the data directory's owner
    target = folder / "data"
    started = time.monotonic()
    try:
        report = restore_backup(settings, backup, None, target_dir=target)
        drill.rto_seconds = report.seconds
        live = _table_names(_connect(settings.database_url))
        recovered_url = make_url(report.url).set(database=make_url(settings.database_url).database)
        connection = _connect(recovered_url.render_as_string(hide_password=False))
        try:
            connection.set_session(readonly=True)
            with connection.cursor() as cursor:
                recovered = postgres_checksums(cursor)
        finally:
            connection.close()
        missing = sorted(set(live) - set(recovered))
        drill.ok = not missing
        drill.detail = (f"tables missing after recovery: {', '.join(missing)}" if missing else
                        f"{len(recovered)} tables readable after replaying the WAL archive "
                        f"({sum(t['rows'] for t in recovered.values())} rows)")
    except Exception as exc:
        drill.ok, drill.detail = False, str(exc)
        drill.rto_seconds = time.monotonic() - started
    finally:
        stop_server(target)
        shutil.rmtree(folder, ignore_errors=True)
    drill.finished_at = utcnow()
    db.session.commit()
    (log.info if drill.ok else log.error)("restore drill finished", extra={
        "backup": backup.name, "ok": drill.ok, "rto_seconds": round(drill.rto_seconds or 0, 2), "detail": drill.detail})
    return drill


def _table_names(connection) -> list[str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                           "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def _scratch_target(settings, backup: Backup):
    """A database that does not exist yet, and how to get rid of it afterwards."""
    if backup.engine == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="controlplane-drill-", dir=settings.backup_work_dir))
        path = folder / "drill.sqlite"

        def cleanup():
            shutil.rmtree(folder, ignore_errors=True)  # with any -journal or -wal beside the file

        return f"sqlite:///{path}", cleanup
    name = f"controlplane_drill_{backup.id}_{secrets.token_hex(3)}"
    url = make_url(settings.backup_drill_url or settings.database_url).set(database=name)

    def cleanup():
        from .engines.pg_logical import _connect

        try:
            connection = _connect(url.render_as_string(hide_password=False), database="postgres")
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.close()
        except Exception as exc:
            log.warning("could not drop the drill database %s: %s", name, exc)

    return url.render_as_string(hide_password=False), cleanup


def raise_if_failed(drill: RestoreDrill) -> None:
    if not drill.ok:
        raise BackupError(f"restore drill failed: {drill.detail}")
