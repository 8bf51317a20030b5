"""Retention: BACKUP_RETENTION_DAYS by time, never breaking what is kept.

Deleted: succeeded or failed backups that finished before the cutoff, and, of the hourly fulls
older than HOURLY_KEPT, all but the first of each UTC day (so 30 days cost 48 + 30 fulls, not
720). Kept regardless: WAL archived since the start of the oldest physical full that stays, pinned
backups, pre-migration backups, every backup that a kept one depends on (an incremental's full,
transitively), and the newest succeeded whole copy (a full, manual or pre-migration backup), so a
quiet month never leaves nothing to restore.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..timeutil import as_utc, utcnow
from .models import RETAINED_KINDS, Backup
from .operations import delete_backups

log = logging.getLogger("controlplane.backups")
HOURLY_KEPT = timedelta(hours=48)


def expired(backups: list[Backup], now: datetime, days: int) -> list[Backup]:
    cutoff = now - timedelta(days=days)
    by_id = {b.id: b for b in backups}
    newest_full = max((b for b in backups if b.full_copy and b.status == "succeeded"),
                      key=lambda b: as_utc(b.finished_at), default=None)

    def old(b: Backup) -> bool:
        return b.status in ("succeeded", "failed") and as_utc(b.finished_at or b.started_at) < cutoff

    def thinned(b: Backup) -> bool:
        return b.kind == "full" and b.status == "succeeded" and as_utc(b.finished_at) < now - HOURLY_KEPT \
            and b.id != first_of_day[as_utc(b.finished_at).date()]

    first_of_day: dict = {}
    for b in sorted(backups, key=lambda b: as_utc(b.finished_at or b.started_at)):
        if b.kind == "full" and b.status == "succeeded":
            first_of_day.setdefault(as_utc(b.finished_at).date(), b.id)
    candidates = {b.id for b in backups
                  if (old(b) or thinned(b)) and not b.pinned and b.kind not in RETAINED_KINDS and b is not newest_full}
    # WAL is needed from the oldest physical full that stays onwards (to replay it to any time).
    wal_kinds = ("wal", "incremental")
    kept_physical = [b for b in backups if b.engine == "pg_physical" and b.kind not in wal_kinds
                     and b.status == "succeeded" and b.id not in candidates]
    replay_from = min((as_utc(b.started_at) for b in kept_physical), default=None)
    for b in backups:
        if b.kind in wal_kinds and b.engine == "pg_physical" and replay_from is not None \
                and as_utc(b.finished_at) >= replay_from:
            candidates.discard(b.id)
    # Whatever a kept backup depends on is kept too.
    for b in backups:
        if b.id in candidates:
            continue
        parent = by_id.get(b.parent_id)
        while parent is not None:
            candidates.discard(parent.id)
            parent = by_id.get(parent.parent_id)
    return sorted((by_id[i] for i in candidates), key=lambda b: b.started_at)


def prune(settings, now: datetime | None = None, dry_run: bool = False) -> list[Backup]:
    """Delete expired backups from storage and the catalog; returns what was (or would be) deleted."""
    rows = list(db.session.execute(select(Backup)).scalars())
    doomed = expired(rows, now or utcnow(), settings.backup_retention_days)
    if dry_run or not doomed:
        return doomed
    delete_backups(settings, doomed)
    log.info("retention deleted backups", extra={"deleted": [row.name for row in doomed]})
    return doomed
