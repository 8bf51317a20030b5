"""The backup catalog and the restore-drill record."""
from __future__ import annotations

import json

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import UTCDateTime
from ..extensions import db
from ..timeutil import isoformat, parse_iso

KINDS = ("full", "incremental", "wal", "pre-migration", "manual")
# Kinds that restore the whole database on their own (the rest are WAL and WAL bundles).
FULL_COPY_KINDS = ("full", "manual", "pre-migration")
MANIFEST_FORMAT = 2
# Kinds that retention never deletes on its own (pinned backups are exempt too, until unpinned).
RETAINED_KINDS = ("pre-migration",)


class Backup(db.Model):
    __tablename__ = "backups"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The name in storage: stable, unique, sortable by time (e.g. 20261130T031500Z-full-a1b2c3).
    name: Mapped[str] = mapped_column(String(80), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # why it was taken (see KINDS)
    # True when it restores the whole database on its own: what "a full backup" means to alerts.
    full_copy: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    engine: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)  # running, succeeded, failed
    started_at = mapped_column(UTCDateTime, nullable=False)
    finished_at = mapped_column(UTCDateTime)
    # Sizes: what storage holds (sealed) and what the engine produced (plain).
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    plain_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Per artefact: name, storage key, sizes and SHA-256 of plaintext and sealed bytes (JSON).
    artefacts: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    key_id: Mapped[str | None] = mapped_column(String(32))
    compression: Mapped[str | None] = mapped_column(String(16))
    storage: Mapped[str] = mapped_column(String(20), nullable=False)
    location: Mapped[str | None] = mapped_column(String(500))
    server_version: Mapped[str | None] = mapped_column(String(120))
    server_version_num: Mapped[int | None] = mapped_column(Integer)
    lsn_start: Mapped[str | None] = mapped_column(String(32))
    lsn_end: Mapped[str | None] = mapped_column(String(32))
    timeline: Mapped[int | None] = mapped_column(Integer)
    # The full this one depends on (incrementals and WAL); retention keeps it while needed.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("backups.id"))
    table_checksums: Mapped[str | None] = mapped_column(Text)
    pinned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)
    verified_at = mapped_column(UTCDateTime)
    verify_ok: Mapped[bool | None] = mapped_column(Boolean)
    verify_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_backups_kind_status_finished", "kind", "status", "finished_at"),)

    @property
    def artefact_list(self) -> list[dict]:
        return json.loads(self.artefacts or "[]")

    @property
    def tables(self) -> dict:
        return json.loads(self.table_checksums) if self.table_checksums else {}

    @property
    def in_catalog(self) -> bool:
        """False for a backup read from its manifest in storage that the catalog does not hold."""
        return self.id is not None

    def manifest(self, parent_name: str | None = None) -> dict:
        """What is sealed into storage with the artefacts, so storage alone describes the backup."""
        return {
            "format": MANIFEST_FORMAT, "name": self.name, "kind": self.kind, "engine": self.engine,
            "full_copy": self.full_copy, "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at), "server_version": self.server_version,
            "server_version_num": self.server_version_num, "key_id": self.key_id, "compression": self.compression,
            "lsn_start": self.lsn_start, "lsn_end": self.lsn_end, "timeline": self.timeline, "parent": parent_name,
            "size_bytes": self.size_bytes, "plain_bytes": self.plain_bytes, "artefacts": self.artefact_list,
            "tables": self.tables,
        }

    @classmethod
    def from_manifest(cls, manifest: dict, storage) -> "Backup":
        """An uncatalogued row (no id) for a succeeded backup, from its authenticated manifest."""
        return cls(name=manifest["name"], kind=manifest["kind"], engine=manifest["engine"], status="succeeded",
                   full_copy=bool(manifest["full_copy"]), started_at=parse_iso(manifest["started_at"]),
                   finished_at=parse_iso(manifest["finished_at"]), size_bytes=manifest["size_bytes"],
                   plain_bytes=manifest["plain_bytes"], artefacts=json.dumps(manifest["artefacts"]),
                   key_id=manifest["key_id"], compression=manifest["compression"], storage=storage.name,
                   location=storage.describe(), server_version=manifest["server_version"],
                   server_version_num=manifest["server_version_num"], lsn_start=manifest["lsn_start"],
                   lsn_end=manifest["lsn_end"], timeline=manifest["timeline"],
                   table_checksums=json.dumps(manifest["tables"], sort_keys=True), pinned=False)


class RestoreDrill(db.Model):
    """One restore drill (or a checked restore): which backup, how long, and whether the data matched."""

    __tablename__ = "restore_drills"

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_id: Mapped[int | None] = mapped_column(ForeignKey("backups.id", ondelete="SET NULL"))
    started_at = mapped_column(UTCDateTime, nullable=False)
    finished_at = mapped_column(UTCDateTime)
    ok: Mapped[bool | None] = mapped_column(Boolean)
    rto_seconds: Mapped[float | None] = mapped_column(db.Float)
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_restore_drills_started", "started_at"),)
