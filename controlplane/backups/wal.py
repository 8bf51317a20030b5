"""Continuous WAL for the physical engine: `pg_receivewal` supervised by the worker's leader, and
the spool it writes sealed into the backup storage.

pg_receivewal streams over a replication slot (created on first start), so WAL the server
produced while the receiver was down is kept for it rather than lost. Every WAL_SEAL_SECONDS the
leader seals each completed segment (kind "wal") and a snapshot of the segment still being
written (`.partial`): that snapshot is what brings the RPO down to about that interval even on a
quiet server whose segments take hours to fill. Every hour the completed segments of the hours
that have ended are sealed again as one "incremental" bundle (a tar), and the single segments
are deleted: one object an hour instead of one per segment.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sqlalchemy import select

from ..extensions import db
from ..timeutil import utcnow
from .engines.pg_logical import _environment, libpq
from .engines.pg_physical import WAL_SLOT as SLOT
from .manifests import write_manifest
from .models import Backup
from .operations import archive_wal, delete_backups, fetch_verified, file_blocks, store_sealed
from .sealing import keyring
from .storage import storage_for

log = logging.getLogger("controlplane.backups")
COMPLETE = re.compile(r"^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$")
PARTIAL = re.compile(r"^([0-9A-F]{24})\.partial$")


def spool_dir(settings) -> Path:
    return settings.data_dir / "wal-spool"


class WalReceiver:
    """One pg_receivewal process; `ensure_running()` starts it or restarts it after it died."""

    def __init__(self, settings):
        self.settings = settings
        self.uri, self.env = libpq(settings.database_url)
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def ensure_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if self.process is not None:
            self.restarts += 1
            log.warning("pg_receivewal exited; restarting", extra={"exit_code": self.process.returncode,
                                                                    "restarts": self.restarts})
        spool = spool_dir(self.settings)
        spool.mkdir(parents=True, exist_ok=True)
        env = _environment(self.env)
        slot = subprocess.run(["pg_receivewal", "--create-slot", "--if-not-exists", "--slot", SLOT, "-d", self.uri],
                              env=env, capture_output=True, text=True)
        if slot.returncode != 0:
            raise RuntimeError(f"pg_receivewal could not create its slot: {slot.stderr.strip()}")
        self.process = subprocess.Popen(
            ["pg_receivewal", "-D", str(spool), "--slot", SLOT, "--synchronous", "-d", self.uri],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def seal_spool(settings) -> int:
    """Seal every completed segment in the spool (then delete it) and a snapshot of the partial one."""
    spool = spool_dir(settings)
    if not spool.exists():
        return 0
    sealed = 0
    for path in sorted(spool.iterdir()):
        if COMPLETE.match(path.name):
            archive_wal(settings, path)
            path.unlink()
            sealed += 1
            # The snapshot of this segment while it was partial is superseded.
            stale = db.session.execute(select(Backup).where(Backup.name == f"wal-{path.name}.partial")).scalar_one_or_none()
            if stale is not None:
                delete_backups(settings, [stale])
    for path in sorted(spool.iterdir()):
        if PARTIAL.match(path.name):
            try:
                archive_wal(settings, path, replace=True)
            except FileNotFoundError:
                continue  # completed (renamed) meanwhile: sealed as a whole segment next time
            sealed += 1
    return sealed


def bundle_finished_hours(settings, now=None):
    """Bundle the completed segments sealed before the current hour; returns the bundle or None."""
    cutoff = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    rows = [row for row in db.session.execute(
        select(Backup).where(Backup.kind == "wal", Backup.engine == "pg_physical", Backup.status == "succeeded",
                             Backup.finished_at < cutoff).order_by(Backup.name)).scalars()
            if COMPLETE.match(row.artefact_list[0]["name"])]
    if not rows:
        return None
    segments = [row.artefact_list[0]["name"] for row in rows]
    work = Path(tempfile.mkdtemp(prefix="controlplane-wal-bundle-", dir=settings.backup_work_dir))
    try:
        bundle_tar = work / "wal.tar"
        with tarfile.open(bundle_tar, "w") as archive:
            for row in rows:
                for name, path in fetch_verified(settings, row, work).items():
                    archive.add(path, arcname=name)
                    path.unlink()
        storage = storage_for(settings)
        name = f"wal-{segments[0]}-{segments[-1]}"
        started = utcnow()
        artefact, result = store_sealed(settings, storage, name, f"wal-bundles/{name}.sealed", "wal.tar",
                                        file_blocks(bundle_tar), "zstd", segments=segments)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bundle = Backup(name=name, kind="incremental", engine="pg_physical", full_copy=False, status="succeeded",
                    started_at=started,
                    finished_at=max(row.finished_at for row in rows), storage=storage.name,
                    location=storage.describe(), compression="zstd", key_id=result.key_id, parent_id=rows[0].parent_id,
                    timeline=rows[0].timeline, size_bytes=result.sealed_bytes, plain_bytes=result.plain_bytes,
                    artefacts=json.dumps([artefact]))
    parent = db.session.get(Backup, bundle.parent_id) if bundle.parent_id else None
    write_manifest(storage, keyring(settings), bundle, parent.name if parent else None)
    db.session.add(bundle)
    db.session.commit()
    delete_backups(settings, rows)  # only once the bundle is stored and catalogued
    log.info("WAL bundled", extra={"bundle": name, "segments": len(segments)})
    return bundle
