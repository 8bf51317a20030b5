"""Taking, verifying and restoring backups: engine → seal → storage → catalog, and back.

A restore reads every artefact from storage into a private working directory, checking each
frame's tag and both SHA-256 sums, before the engine is allowed to touch the target. So a flipped
byte, a cut file, a wrong key, a missing object or an artefact swapped in from another backup
(each is sealed bound to its backup and name) stops the restore with nothing written. Every
backup seals its manifest into storage too (manifests.py), so storage alone describes it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, text

from ..extensions import db
from ..timeutil import as_utc, utcnow
from .catalog import catalog_readable, catalog_row, rebuild_catalog, wal_backups
from .engines import EngineError, engine_for
from .errors import BackupError
from .manifests import manifest_key, write_manifest
from .models import FULL_COPY_KINDS, Backup
from .progress import Progress, counted
from .sealing import BackupIntegrityError, binding, keyring, seal, unseal
from .storage import StorageError, storage_for

log = logging.getLogger("controlplane.backups")


def find_backup(identifier: str | int) -> Backup:
    """The catalog's row for an id or name (catalog.locate_backup also looks in storage)."""
    text = str(identifier).strip()
    row = catalog_row(text)
    if row is None:
        raise BackupError(f"no backup {text!r} in the catalog (see `controlplane backup list`)")
    return row


def _object_key(name: str, artefact: str) -> str:
    return f"{name}/{artefact}.sealed"


def file_blocks(path: Path, size: int = 1 << 20):
    """A file's bytes in blocks, for sealing without reading it whole."""
    with open(path, "rb") as handle:
        while block := handle.read(size):
            yield block


def store_sealed(settings, storage, backup: str, key: str, name: str, blocks, compression: str,
                 **extra) -> tuple[dict, object]:
    """Seal `blocks` (artefact `name` of `backup`) into storage at `key`; the catalog's artefact
    entry and the seal's result."""
    sealed, result = seal(blocks, keyring(settings), compression, bound_to=binding(backup, name))
    storage.put(key, sealed)
    return ({"name": name, "key": key, **extra, "plain_bytes": result.plain_bytes, "plain_sha256": result.plain_sha256,
             "sealed_bytes": result.sealed_bytes, "sealed_sha256": result.sealed_sha256}, result)


def take_backup(settings, kind: str = "full", progress: bool = False, engine_name: str | None = None) -> Backup:
    """Run one backup to completion and record it; a failure is recorded too, then raised."""
    engine = engine_for(settings, engine_name)
    storage = storage_for(settings)
    started = utcnow()
    row = Backup(name=f"{started:%Y%m%dT%H%M%SZ}-{kind}-{secrets.token_hex(3)}", kind=kind, engine=engine.name,
                 full_copy=kind in FULL_COPY_KINDS, status="running", started_at=started, storage=storage.name,
                 location=storage.describe(), compression=engine.compression, key_id=keyring(settings).current_id,
                 artefacts="[]")
    db.session.add(row)
    db.session.commit()
    written: list[str] = []
    dump = None
    try:
        dump = engine.dump()
        meter = Progress(f"backup {row.name}", getattr(dump, "expected_bytes", None)) if progress else None
        artefacts = []
        for artefact, blocks in dump.artefacts:
            key = _object_key(row.name, artefact)
            written.append(key)
            artefacts.append(store_sealed(settings, storage, row.name, key, artefact, counted(blocks, meter),
                                          engine.compression)[0])
        _describe_dump(row, artefacts, dump.finish())
        if meter:
            meter.finish()
        written.append(manifest_key(row.name))
        write_manifest(storage, keyring(settings), row)
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
    db.session.commit()
    log.info("backup succeeded", extra={"backup": row.name, "kind": kind, "bytes": row.size_bytes,
                                         "seconds": round((row.finished_at - row.started_at).total_seconds(), 2)})
    return row


def _describe_dump(row: Backup, artefacts: list[dict], meta: dict) -> None:
    """Fill in what the stored artefacts and the engine say about a finished dump."""
    row.artefacts = json.dumps(artefacts)
    row.size_bytes = sum(a["sealed_bytes"] for a in artefacts)
    row.plain_bytes = sum(a["plain_bytes"] for a in artefacts)
    row.server_version, row.server_version_num = meta.get("server_version"), meta.get("server_version_num")
    row.lsn_end = meta.get("lsn")
    row.lsn_start = meta.get("lsn_start") or row.lsn_end
    row.timeline = meta.get("timeline")
    row.table_checksums = json.dumps(meta.get("tables") or {}, sort_keys=True)
    row.finished_at = utcnow()
    row.status = "succeeded"


def archive_wal(settings, path: Path, replace: bool = False) -> Backup:
    """Seal and store one WAL file for PostgreSQL's archive_command; safe to call twice.

    PostgreSQL deletes the segment once this returns, so the object is stored before the catalog
    row commits. Archiving the same name again with the same content succeeds (the server may
    retry after a crash); different content is refused, as the archive_command contract asks.
    """
    if not path.exists():
        raise FileNotFoundError(path)
    if not path.is_file():
        raise BackupError(f"archive-wal: {path} is not a file")
    name = f"wal-{path.name}"
    existing = db.session.execute(select(Backup).where(Backup.name == name)).scalar_one_or_none()
    if existing is not None:  # only then is the content compared, so a new segment is read once
        same = existing.artefact_list[0]["plain_sha256"] == _sha256(path)
        if existing.status == "succeeded" and same:
            return existing
        if existing.status == "succeeded" and not replace:
            raise BackupError(f"archive-wal: {path.name} was archived before with different content")
        delete_backups(settings, [existing])  # a failed attempt, or a newer snapshot of a partial segment
    storage = storage_for(settings)
    started = utcnow()
    artefact, result = store_sealed(settings, storage, name, f"wal/{path.name}.sealed", path.name,
                                    file_blocks(path), "zstd")
    parent = db.session.execute(
        select(Backup).where(Backup.engine == "pg_physical", Backup.full_copy.is_(True),
                             Backup.status == "succeeded").order_by(Backup.finished_at.desc()).limit(1)
    ).scalar_one_or_none()
    row = Backup(name=name, kind="wal", engine="pg_physical", full_copy=False, status="succeeded", started_at=started,
                 finished_at=utcnow(), storage=storage.name, location=storage.describe(), compression="zstd",
                 key_id=result.key_id, parent_id=parent.id if parent else None, size_bytes=result.sealed_bytes,
                 plain_bytes=result.plain_bytes,
                 timeline=int(path.name[:8], 16) if len(path.name) >= 8 and path.name[:8].isalnum() else None,
                 artefacts=json.dumps([artefact]))
    write_manifest(storage, keyring(settings), row, parent.name if parent else None)
    db.session.add(row)
    db.session.commit()
    return row


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for block in file_blocks(path):
        digest.update(block)
    return digest.hexdigest()


def delete_backups(settings, rows: list[Backup]) -> None:
    """Remove backups' objects from storage, then their catalog rows, in one commit."""
    storage = storage_for(settings)
    for row in rows:
        storage.delete(manifest_key(row.name))  # first: storage never describes a half-deleted backup
        for artefact in row.artefact_list:
            storage.delete(artefact["key"])
        db.session.delete(row)
    db.session.commit()


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
            plain = unseal(storage.open(artefact["key"]), keys, artefact["plain_sha256"], artefact["sealed_sha256"],
                           bound_to=binding(row.name, artefact["name"]))
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
    """Read the whole backup back and check it; the result is recorded either way (in the
    catalog; a backup only storage holds has no row to record it in)."""
    if not row.in_catalog:
        fetch_verified(settings, row, None, progress)
        return
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
    url: str | None = None  # a restored physical copy's server, while it runs


def restore_backup(settings, row: Backup, target_url: str | None, in_place: bool = False, progress: bool = False,
                   with_globals: bool = False, compare: bool = True, target_dir: Path | None = None,
                   to_time: datetime | None = None, start: bool = True) -> RestoreReport:
    """Restore `row` into `target_url`, or over the live database when `in_place`; a physical
    backup into `target_dir`, replaying archived WAL up to `to_time`."""
    from ..settings import redact_url

    started = time.monotonic()
    if row.engine == "pg_physical":
        return _restore_physical(settings, row, target_dir, to_time, progress, start, started)
    if to_time is not None:
        raise BackupError(f"backup {row.name} was taken by the {row.engine} engine: restoring to a point in time "
                          "needs a physical base backup and archived WAL (BACKUP_ENGINE=pg_physical)")
    if bool(target_url) == bool(in_place):
        raise BackupError("say where to restore: --target-url URL (a new or empty database), "
                          "or --in-place to replace the live database")
    url = settings.database_url if in_place else target_url
    _usable(row)
    name, manifest, recorded, from_storage = row.name, row.manifest(), row.tables, not row.in_catalog
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
        catalog = _catalog_snapshot() if in_place and catalog_readable() else None
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
        if in_place and from_storage:  # the catalog did not know this backup: now it knows storage
            rebuild_catalog(settings)
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


def _unpack_bundle(bundle: Path, wal_dir: Path) -> None:
    import tarfile

    with tarfile.open(bundle) as archive:
        archive.extractall(wal_dir, filter="data")
    bundle.unlink()


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


def _restore_physical(settings, row: Backup, target_dir: Path | None, to_time: datetime | None, progress: bool,
                      start: bool, started: float) -> RestoreReport:
    from .engines import pg_physical

    _usable(row)
    if target_dir is None:
        raise BackupError(f"backup {row.name} is physical: restore it into a new data directory with --target-dir DIR")
    if row.kind == "wal":
        raise BackupError(f"{row.name} is a WAL segment: restore its base backup (a full) with --to-time")
    if to_time is not None and to_time < as_utc(row.finished_at):
        raise BackupError(f"backup {row.name} finished at {as_utc(row.finished_at).isoformat()}: a point in time "
                          "must come after the base backup it starts from")
    wal_rows = wal_backups(settings, from_storage=not row.in_catalog)
    newest = max((as_utc(w.finished_at) for w in wal_rows), default=None)
    if to_time is not None and (newest is None or to_time > newest):
        raise BackupError(f"the newest archived WAL is from {newest.isoformat() if newest else 'nowhere'}: "
                          f"{to_time.isoformat()} is beyond what can be recovered")
    work = Path(tempfile.mkdtemp(prefix="controlplane-restore-", dir=settings.backup_work_dir))
    try:
        try:
            bindir = pg_physical.postgres_bindir((row.server_version_num or 0) // 10000 or None,
                                                 settings.backup_pg_bindir)
            files = fetch_verified(settings, row, work, progress)
            label = pg_physical.backup_label(files["base.tar"])
            # A segment is sealed alone ("wal") or inside an hourly bundle ("incremental").
            by_segment = {}
            for w in wal_rows:
                for segment in w.artefact_list[0].get("segments") or [w.artefact_list[0]["name"]]:
                    by_segment[segment] = w
            chain = pg_physical.check_wal_chain(label["start_segment"], list(by_segment))
        except pg_physical.EngineError as exc:
            raise BackupError(f"backup {row.name}: {exc}") from exc
        wal_dir = work / "wal"
        wal_dir.mkdir()
        fetched = set()
        for segment in chain + [n for n in by_segment if n.endswith(".history")]:
            source = by_segment[segment]
            if source.name in fetched:
                continue
            fetched.add(source.name)
            if source.kind == "incremental":
                _unpack_bundle(fetch_verified(settings, source, work)["wal.tar"], wal_dir)
                continue
            fetch_verified(settings, source, wal_dir)
            if segment.endswith(".partial"):  # the newest snapshot replays as the segment itself
                (wal_dir / segment).rename(wal_dir / segment.removesuffix(".partial"))
        read_seconds = time.monotonic() - started
        port = pg_physical.free_port()
        try:
            target = Path(target_dir).resolve()
            pg_physical.prepare_data_directory(files["base.tar"], wal_dir, target,
                                               to_time.isoformat() if to_time else None, port)
            url = pg_physical.start_and_wait(target, bindir, port) if start else None
        except pg_physical.EngineError as exc:
            raise BackupError(f"backup {row.name}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    report = RestoreReport(row.name, str(target), seconds, read_seconds, url=url)
    log.info("point-in-time restore finished", extra={"backup": row.name, "target": str(target),
                                                       "to_time": to_time.isoformat() if to_time else None,
                                                       "wal_segments": len(chain), "rto_seconds": round(seconds, 2)})
    return report
