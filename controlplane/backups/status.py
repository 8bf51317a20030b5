"""What the current setup achieves (`controlplane backup status`) and the metrics alerts read."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..timeutil import as_utc, isoformat, utcnow
from .engines import EngineError, engine_for
from .models import KINDS, Backup, RestoreDrill


def latest(kind: str | None = None, status: str = "succeeded") -> Backup | None:
    query = select(Backup).where(Backup.status == status)
    if kind:
        query = query.where(Backup.kind == kind)
    return db.session.execute(query.order_by(Backup.finished_at.desc()).limit(1)).scalar_one_or_none()


def latest_full() -> Backup | None:
    """The newest succeeded backup that restores the whole database on its own (a full, a manual
    or a pre-migration backup): what "the last full backup" means to BackupMissing."""
    return db.session.execute(
        select(Backup).where(Backup.status == "succeeded", Backup.full_copy.is_(True))
        .order_by(Backup.finished_at.desc()).limit(1)).scalar_one_or_none()


def latest_drill() -> RestoreDrill | None:
    return db.session.execute(
        select(RestoreDrill).where(RestoreDrill.finished_at.is_not(None))
        .order_by(RestoreDrill.finished_at.desc()).limit(1)).scalar_one_or_none()


def backup_status(settings, now: datetime | None = None) -> dict:
    from .storage import StorageError, storage_for

    now = now or utcnow()
    try:
        engine = engine_for(settings).name
    except EngineError as exc:
        engine = f"unusable: {exc}"
    try:
        storage = storage_for(settings).describe()
    except StorageError as exc:
        storage = f"unusable: {exc}"
    newest = latest()
    full, incremental, failed = latest_full(), latest("incremental"), latest(status="failed")
    drill = latest_drill()
    hour, minute = settings.backup_full_at

    def summary(row: Backup | None) -> dict | None:
        if row is None:
            return None
        return {"name": row.name, "finished_at": isoformat(row.finished_at),
                "age_seconds": round((now - as_utc(row.finished_at)).total_seconds()), "size_bytes": row.size_bytes}

    if settings.backup_engine == "pg_physical":
        schedule = (f"base backup daily at {hour:02d}:{minute:02d} UTC, WAL sealed every "
                    f"{settings.backup_wal_seal_seconds:g} s")
    elif settings.backup_hourly:
        schedule = f"full every hour at :{minute:02d}"
    else:
        schedule = f"full daily at {hour:02d}:{minute:02d} UTC"
    schedule += f", retention {settings.backup_retention_days} days, drill every {settings.backup_drill_weekday}"
    return {
        "engine": engine,
        "storage": storage,
        "schedule": schedule,
        "last_full": summary(full),
        "last_incremental": summary(incremental),
        "last_wal": summary(latest("wal")),
        "last_failure": ({"name": failed.name, "finished_at": isoformat(failed.finished_at),
                          "error": failed.error} if failed else None),
        # What a loss now would cost: the age of the newest backup or sealed WAL.
        "current_rpo_seconds": round((now - as_utc(newest.finished_at)).total_seconds()) if newest else None,
        "target_rpo_seconds": (round(settings.backup_wal_seal_seconds) if settings.backup_engine == "pg_physical"
                               else 3600 if settings.backup_hourly else 86400),
        "expected_rto_seconds": round(drill.rto_seconds, 1) if drill and drill.rto_seconds else None,
        "last_drill": ({"finished_at": isoformat(drill.finished_at), "ok": drill.ok, "detail": drill.detail}
                       if drill else None),
    }


def backup_families():
    """Read at scrape time from the catalog, so every instance reports the same figures."""
    from prometheus_client.core import GaugeMetricFamily

    success = GaugeMetricFamily("controlplane_backup_last_success_timestamp_seconds",
                                "When the newest succeeded backup of each kind finished.", labels=["kind"])
    size = GaugeMetricFamily("controlplane_backup_last_size_bytes", "Stored size of the newest succeeded backup.",
                             labels=["kind"])
    duration = GaugeMetricFamily("controlplane_backup_last_duration_seconds",
                                 "How long the newest succeeded backup of each kind took.", labels=["kind"])
    for kind in KINDS:
        row = latest(kind)
        if row is None:
            continue
        success.add_metric([kind], as_utc(row.finished_at).timestamp())
        size.add_metric([kind], row.size_bytes or 0)
        duration.add_metric([kind], (as_utc(row.finished_at) - as_utc(row.started_at)).total_seconds())
    yield success
    yield size
    yield duration
    newest = latest()
    rpo = GaugeMetricFamily("controlplane_backup_rpo_seconds",
                            "Age of the newest succeeded backup: what a loss now would cost (the RPO estimate).")
    if newest is not None:
        rpo.add_metric([], (utcnow() - as_utc(newest.finished_at)).total_seconds())
    yield rpo
    drill = latest_drill()
    drill_ok = GaugeMetricFamily("controlplane_backup_drill_success", "1 if the newest restore drill matched, else 0.")
    drill_time = GaugeMetricFamily("controlplane_backup_drill_timestamp_seconds", "When the newest restore drill finished.")
    drill_rto = GaugeMetricFamily("controlplane_backup_drill_rto_seconds", "The RTO the newest restore drill achieved.")
    if drill is not None:
        drill_ok.add_metric([], 1.0 if drill.ok else 0.0)
        drill_time.add_metric([], as_utc(drill.finished_at).timestamp())
        drill_rto.add_metric([], drill.rto_seconds or 0.0)
    yield drill_ok
    yield drill_time
    yield drill_rto
