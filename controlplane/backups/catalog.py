"""The catalog and storage together: `backup list` shows what storage holds (the catalog's rows and
the backups only storage knows), `backup restore NAME` finds a backup in storage when the catalog
does not have it (a new or empty database), and `backup catalog rebuild` re-imports storage.

Only authenticated manifests are believed (manifests.py). A manifest that cannot be read is
reported by name, never silently skipped, and the catalog never loses a row in a rebuild.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import inspect, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from ..extensions import db
from ..timeutil import as_utc
from .errors import BackupError
from .manifests import read_manifest, stored_names
from .models import Backup
from .sealing import BackupIntegrityError, keyring
from .storage import StorageError, storage_for

# What a manifest that is authentic but not what this build understands raises while being read.
MANIFEST_ERRORS = (BackupIntegrityError, StorageError, ValueError, KeyError, TypeError)
# Columns a rebuild leaves as the catalog has them: its own bookkeeping, not facts about storage.
CATALOG_ONLY_COLUMNS = ("id", "pinned", "parent_id", "verified_at", "verify_ok", "verify_error")


def catalog_readable() -> bool:
    """Whether this database holds the catalog table (a brand-new or unreachable one does not)."""
    try:
        return inspect(db.engine).has_table(Backup.__tablename__)
    except (OperationalError, ProgrammingError):
        db.session.rollback()
        return False


def catalog_row(text: str) -> Backup | None:
    """The catalog's row for an id ("12") or a name, or None."""
    if text.isdigit():
        return db.session.get(Backup, int(text))
    return db.session.execute(select(Backup).where(Backup.name == text)).scalar_one_or_none()


def locate_backup(settings, identifier: str | int) -> Backup:
    """The catalog's row for an id or name, else (names only) a row read from storage's manifest."""
    text = str(identifier).strip()
    row = catalog_row(text) if catalog_readable() else None
    if row is not None:
        return row
    if text.isdigit():
        raise BackupError(f"no backup {text!r} in the catalog (see `controlplane backup list`; "
                          "a backup only storage holds is named, not numbered)")
    storage = storage_for(settings)
    try:
        return Backup.from_manifest(read_manifest(storage, keyring(settings), text), storage)
    except StorageError as exc:
        if exc.permanent:
            raise BackupError(f"no backup {text!r} in the catalog or in storage ({storage.describe()}): "
                              "see `controlplane backup list`") from None
        raise BackupError(f"backup {text}: {exc}") from exc
    except MANIFEST_ERRORS as exc:
        raise BackupError(f"backup {text}: its manifest in storage cannot be trusted: {exc}") from exc


@dataclass
class StorageView:
    """The catalog's rows and the uncatalogued backups storage holds, newest first."""

    rows: list[Backup]
    catalog_readable: bool
    not_in_storage: set[str] = field(default_factory=set)  # catalogued, but storage has no manifest
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, why) of untrusted manifests
    legacy: list[str] = field(default_factory=list)  # plaintext manifest.json only: not read


def storage_view(settings) -> StorageView:
    storage, keys = storage_for(settings), keyring(settings)
    readable = catalog_readable()
    catalogued = list(db.session.execute(select(Backup)).scalars()) if readable else []
    names, legacy = stored_names(storage)
    known = {row.name for row in catalogued}
    view = StorageView(list(catalogued), readable, legacy=legacy)
    for name in names:
        if name in known:
            continue
        try:
            view.rows.append(Backup.from_manifest(read_manifest(storage, keys, name), storage))
        except MANIFEST_ERRORS as exc:
            view.unreadable.append((name, str(exc)))
    stored = set(names)
    view.not_in_storage = {row.name for row in catalogued if row.status == "succeeded" and row.name not in stored}
    view.rows.sort(key=lambda row: as_utc(row.started_at), reverse=True)  # SQLite's are naive
    return view


def wal_backups(settings, from_storage: bool) -> list[Backup]:
    """The succeeded WAL segments and bundles of the physical engine, from the catalog or storage."""
    if from_storage:
        rows = storage_view(settings).rows
    else:
        rows = db.session.execute(select(Backup).where(Backup.status == "succeeded")).scalars().all()
    return [row for row in rows if row.kind in ("wal", "incremental") and row.engine == "pg_physical"
            and row.status == "succeeded"]


@dataclass
class RebuildReport:
    imported: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # catalogued as running or failed, stored whole
    unchanged: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    legacy: list[str] = field(default_factory=list)
    not_in_storage: list[str] = field(default_factory=list)


def rebuild_catalog(settings) -> RebuildReport:
    """Import every backup storage holds that the catalog lacks; idempotent, never deletes a row.

    A row the catalog holds as running or failed while storage holds its manifest (written only
    once a backup succeeded) is brought in line: that is the state a database restored from its
    own backup is in, since the dump was taken while its row said "running".
    """
    if not catalog_readable():
        raise BackupError("this database has no backup catalog yet: run `controlplane db upgrade` first "
                          "(or restore a backup into it, which brings the catalog with it)")
    storage, keys = storage_for(settings), keyring(settings)
    names, legacy = stored_names(storage)
    existing = {row.name: row for row in db.session.execute(select(Backup)).scalars()}
    report = RebuildReport(legacy=legacy)
    parents: dict[str, str] = {}
    for name in names:
        row = existing.get(name)
        if row is not None and row.status == "succeeded":
            report.unchanged += 1
            continue
        try:
            manifest = read_manifest(storage, keys, name)
            fresh = Backup.from_manifest(manifest, storage)
        except MANIFEST_ERRORS as exc:
            report.unreadable.append((name, str(exc)))
            continue
        if manifest.get("parent"):
            parents[name] = manifest["parent"]
        if row is None:
            db.session.add(fresh)
            existing[name] = fresh
            report.imported.append(name)
        else:
            _copy_storage_facts(fresh, row)
            report.repaired.append(name)
    db.session.flush()
    for name, parent in parents.items():
        if parent in existing and existing[name].parent_id is None:
            existing[name].parent_id = existing[parent].id
    db.session.commit()
    stored = set(names)
    report.not_in_storage = sorted(n for n, row in existing.items() if row.status == "succeeded" and n not in stored)
    return report


def _copy_storage_facts(source: Backup, target: Backup) -> None:
    for column in Backup.__table__.columns:
        if column.key not in CATALOG_ONLY_COLUMNS:
            setattr(target, column.key, getattr(source, column.key))
