"""What the workers did: one heartbeat row per worker process and one row per job run."""
from sqlalchemy import Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db


class WorkerHeartbeat(db.Model):
    __tablename__ = "worker_heartbeats"

    instance: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    started_at = mapped_column(UTCDateTime, nullable=False)
    last_seen_at = mapped_column(UTCDateTime, nullable=False, index=True)
    is_leader: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class JobRun(db.Model):
    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_finished_at", "job_id", "finished_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), nullable=False)
    instance: Mapped[str] = mapped_column(String(128), nullable=False)
    started_at = mapped_column(UTCDateTime, nullable=False, index=True)
    finished_at = mapped_column(UTCDateTime)
    # running | success | failure
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
