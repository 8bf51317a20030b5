"""Recording job runs and heartbeats, and reading them back for metrics and health."""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from ..extensions import db
from ..timeutil import as_utc, utcnow
from ..version import VERSION
from .models import JobRun, WorkerHeartbeat

log = logging.getLogger(__name__)


def record_run(job_id: str, instance: str, func) -> JobRun:
    """Run `func()` inside an app context, recording start, end, outcome and error."""
    run = JobRun(job_id=job_id, instance=instance, started_at=utcnow(), outcome="running")
    db.session.add(run)
    db.session.commit()
    started = time.perf_counter()
    try:
        func()
        run.outcome, run.error = "success", None
    except Exception as exc:
        db.session.rollback()
        log.exception("job %s failed", job_id)
        run.outcome, run.error = "failure", f"{type(exc).__name__}: {exc}"[:4000]
    run.finished_at = utcnow()
    run.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    db.session.add(run)
    db.session.commit()
    return run


def write_heartbeat(instance: str, started_at: datetime, is_leader: bool) -> None:
    beat = db.session.get(WorkerHeartbeat, instance)
    if beat is None:
        beat = WorkerHeartbeat(instance=instance, hostname=socket.gethostname(), pid=os.getpid(),
                               version=VERSION, started_at=started_at)
        db.session.add(beat)
    beat.last_seen_at = utcnow()
    beat.is_leader = is_leader
    db.session.commit()


def forget_worker(instance: str) -> None:
    db.session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.instance == instance))
    db.session.commit()


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    last_finished_at: datetime | None
    last_outcome: str | None
    last_duration_ms: float | None
    last_success_at: datetime | None


def job_summaries(job_ids: list[str]) -> list[JobSummary]:
    summaries = []
    for job_id in job_ids:
        finished = JobRun.finished_at.is_not(None)
        last = db.session.execute(
            select(JobRun).where(JobRun.job_id == job_id, finished).order_by(JobRun.finished_at.desc()).limit(1)
        ).scalar_one_or_none()
        success_at = db.session.execute(
            select(JobRun.finished_at).where(JobRun.job_id == job_id, JobRun.outcome == "success")
            .order_by(JobRun.finished_at.desc()).limit(1)
        ).scalar_one_or_none()
        summaries.append(JobSummary(
            job_id=job_id,
            last_finished_at=as_utc(last.finished_at) if last else None,
            last_outcome=last.outcome if last else None,
            last_duration_ms=last.duration_ms if last else None,
            last_success_at=as_utc(success_at),
        ))
    return summaries


def prune_job_runs(retention_days: int) -> int:
    cutoff = utcnow() - timedelta(days=retention_days)
    deleted = db.session.execute(delete(JobRun).where(JobRun.started_at < cutoff)).rowcount
    db.session.commit()
    return deleted


def live_worker_counts(stale_seconds: float, now: datetime | None = None) -> tuple[int, int]:
    """(workers with a fresh heartbeat, of which holding the leader lock)."""
    from sqlalchemy import func

    from .models import WorkerHeartbeat

    fresh = WorkerHeartbeat.last_seen_at > (now or utcnow()) - timedelta(seconds=stale_seconds)
    live, leading = db.session.execute(
        select(func.count(), func.count().filter(WorkerHeartbeat.is_leader.is_(True))).where(fresh)).one()
    return int(live), int(leading)
