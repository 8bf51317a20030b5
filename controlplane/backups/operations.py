"""Taking, verifying and restoring backups: engine → seal → storage → catalog, and back.

A restore reads every artefact from storage into a private working directory, checking each
frame's tag and both SHA-256 sums, before the engine is allowed to touch the target. So a flipped
byte, a cut file, a wrong key or a missing object stops the restore with nothing written.
"""
from __future__ import annotations

import json
import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text

from ..extensions import db
from ..timeutil import utcnow
from .engines import EngineError, engine_for
from .models import Backup
from .progress import Progress, counted
from .sealing import BackupIntegrityError, Keyring, seal, unseal
from .storage import StorageError, storage_for

log = logging.getLogger("controlplane.backups")


class BackupError(Exception):
    """A backup, verification or restore that cannot go on; the message names the backup and why."""


def keyring(settings) -> Keyring:
    return Keyring(settings.backup_encryption_key, settings.backup_encryption_keys_previous)


def find_backup(identifier: str | int) -> Backup:
    text = str(identifier).strip()
    row = db.session.get(Backup, int(text)) if text.isdigit() else db.session.execute(
        select(Backup).where(Backup.name == text)).scalar_one_or_none()
    if row is None:
        raise BackupError(f"no backup {text!r} in the catalog (see `controlplane backup list`)")
    return row


def _object_key(name: str, artefact: str) -> str:
    return f"{name}/{artefact}.sealed"


def take_backup(settings, kind: str = "manual", progress: bool = False, engine_name: str | None = None) -> Backup:
    """Run one backup to completion and record it; a failure is recorded too, then raised."""
    engine = engine_for(settings, engine_name)
    storage = storage_for(settings)
    started = utcnow()
    row = Backup(name=f"{started:%Y%m%dT%H%M%SZ}-{kind}-{secrets.token_hex(3)}", kind=kind, engine=engine.name,
                 status="running", started_at=started, storage=storage.name, location=storage.describe(),
                 compression=engine.compression, key_id=keyring(settings).current_id, artefacts="[]")
    db.session.add(row)
    db.session.commit()
    written: list[str] = []
    dump = None
    try:
        dump = engine.dump()
        meter = Progress(f"backup {row.name}", getattr(dump, "expected_bytes", None)) if progress else None
        artefacts = []
        for artefact, blocks in dump.artefacts:
            sealed, result = seal(counted(blocks, meter), keyring(settings), engine.compression)
            key = _object_key(row.name, artefact)
            written.append(key)
            storage.put(key, sealed)
            artefacts.append({"name": artefact, "key": key, "plain_bytes": result.plain_bytes,
                              "plain_sha256": result.plain_sha256, "sealed_bytes": result.sealed_bytes,
                              "sealed_sha256": result.sealed_sha256})
        meta = dump.finish()
        if meter:
            meter.finish()
    except Exception as exc:
        if dump is not None and hasattr(dump, "abort"):
            dump.abort()
        for key in written:
            try:
                storage.delete(key)
            except Exception:
                log.warning("could not remove the partial object %s", key)
        db.session.rollback()
        row.status, row.finished_at, row.error = "failed", utcnow(), f"{type(exc).__name__}: {exc}"
        db.session.commit()
        log.error("backup failed", extra={"backup": row.name, "kind": kind, "error": row.error})
        raise BackupError(f"backup {row.name} failed: {exc}") from exc
    row.artefacts = json.dumps(artefacts)
    row.size_bytes = sum(a["sealed_bytes"] for a in artefacts)
    row.plain_bytes = sum(a["plain_bytes"] for a in artefacts)
    row.server_version, row.server_version_num = meta.get("server_version"), meta.get("server_version_num")
    row.lsn_start = row.lsn_end = meta.get("lsn")
    row.table_checksums = json.dumps(meta.get("tables") or {}, sort_keys=True)
    row.finished_at = utcnow()
    storage.put(f"{row.name}/manifest.json", [json.dumps(row.manifest(), indent=2, sort_keys=True).encode()])
    row.status = "succeeded"
    db.session.commit()
    log.info("backup succeeded", extra={"backup": row.name, "kind": kind, "bytes": row.size_bytes,
                                         "seconds": round((row.finished_at - row.started_at).total_seconds(), 2)})
    return row


def _usable(row: Backup) -> None:
    if row.status != "succeeded":
        raise BackupError(f"backup {row.name} is {row.status}; only a succeeded backup can be read")


def fetch_verified(settings, row: Backup, directory: Path | None, progress: bool = False) -> dict[str, Path]:
    """Every artefact of `row`, unsealed and checked, as files in `directory` (None: check only)."""
    _usable(row)
    storage = storage_for(settings)
    keys = keyring(settings)
    meter = Progress(f"read {row.name}", row.plain_bytes) if progress else None
    files = {}
    for artefact in row.artefact_list:
        try:
            plain = unseal(storage.open(artefact["key"]), keys, artefact["plain_sha256"], artefact["sealed_sha256"])
            if directory is None:
                for block in counted(plain, meter):
                    pass
                continue
            path = directory / artefact["name"]
            with open(path, "wb") as out:
                for block in counted(plain, meter):
                    out.write(block)
            files[artefact["name"]] = path
        except (BackupIntegrityError, StorageError) as exc:
            raise BackupError(f"backup {row.name}, {artefact['name']}: {exc}") from exc
    if meter:
        meter.finish()
    return files


def verify_backup(settings, row: Backup, progress: bool = False) -> None:
    """Read the whole backup back and check it; the result is recorded either way."""
    try:
        fetch_verified(settings, row, None, progress)
    except BackupError as exc:
        row.verified_at, row.verify_ok, row.verify_error = utcnow(), False, str(exc)
        db.session.commit()
        raise
    row.verified_at, row.verify_ok, row.verify_error = utcnow(), True, None
    db.session.commit()


@dataclass
class RestoreReport:
    backup: str
    target: str
    seconds: float  # the RTO achieved: from the start until the data is back
    read_seconds: float = 0.0  # of which reading, verifying and unsealing the artefacts
    problems: list[str] = field(default_factory=list)
    tables: int = 0


def restore_backup(settings, row: Backup, target_url: str | None, in_place: bool = False, progress: bool = False,
                   with_globals: bool = False, compare: bool = True) -> RestoreReport:
    """Restore `row` into `target_url`, or over the live database when `in_place`."""
    from ..settings import redact_url

    started = time.monotonic()
    if bool(target_url) == bool(in_place):
        raise BackupError("say where to restore: --target-url URL (a new or empty database), "
                          "or --in-place to replace the live database")
    url = settings.database_url if in_place else target_url
    _usable(row)
    name, manifest, recorded = row.name, row.manifest(), row.tables
    engine = engine_for(settings, row.engine)
    try:
        engine.check_target(url, in_place, manifest)
    except EngineError as exc:
        raise BackupError(f"backup {name}: {exc}") from exc
    work = Path(tempfile.mkdtemp(prefix="controlplane-restore-", dir=settings.backup_work_dir))
    try:
        files = fetch_verified(settings, row, work, progress)
        read_seconds = time.monotonic() - started
        # The catalog describes storage, which a restore does not rewind: keep it as it is now.
        catalog = _catalog_snapshot() if in_place else None
        db.session.commit()  # hold no locks while the engine replaces tables
        if in_place:
            db.session.remove()
            db.engine.dispose()
        try:
            if with_globals:
                engine.restore_globals(files, url)
            engine.restore(files, url, in_place)
        except EngineError as exc:
            raise BackupError(f"backup {name}: {exc}") from exc
        if catalog is not None:
            _restore_catalog(catalog)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    report = RestoreReport(name, redact_url(url), seconds, read_seconds)
    if compare and recorded:
        from .checksums import differences

        actual = engine.checksums(url)
        if in_place:  # the catalog tables were put back as they are now, not as at backup time
            recorded = {t: v for t, v in recorded.items() if not _is_catalog(t)}
            actual = {t: v for t, v in actual.items() if not _is_catalog(t)}
        report.problems = differences(recorded, actual)
        report.tables = len(recorded)
    log.info("restore finished", extra={"backup": name, "target": report.target,
                                        "rto_seconds": round(seconds, 2),
                                        "read_seconds": round(read_seconds, 2), "problems": len(report.problems)})
    return report


CATALOG_TABLES = ("backups", "restore_drills")


def _is_catalog(table: str) -> bool:
    return table.rsplit(".", 1)[-1] in CATALOG_TABLES


def _catalog_snapshot() -> dict[str, list[dict]]:
    from .models import RestoreDrill

    return {model.__tablename__: [{c.key: getattr(r, c.key) for c in model.__table__.columns}
                                  for r in db.session.execute(select(model).order_by(model.id)).scalars()]
            for model in (Backup, RestoreDrill)}


def _restore_catalog(snapshot: dict[str, list[dict]]) -> None:
    from .models import RestoreDrill

    db.session.execute(RestoreDrill.__table__.delete())
    db.session.execute(Backup.__table__.delete())
    for model in (Backup, RestoreDrill):
        rows = snapshot[model.__tablename__]
        if rows:
            db.session.execute(model.__table__.insert(), rows)
            if db.engine.dialect.name == "postgresql":
                db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{model.__tablename__}', 'id'), "
                                        f"{max(r['id'] for r in rows)})"))
    db.session.commit()
