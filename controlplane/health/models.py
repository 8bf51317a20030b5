"""Stored health check results: the shared cache every web process reads, and uptime history."""
from datetime import date

from sqlalchemy import Date, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db

SCHEDULED = "scheduled"
MANUAL = "manual"


class CheckResult(db.Model):
    __tablename__ = "check_results"
    __table_args__ = (Index("ix_check_results_check_checked_at", "check_name", "checked_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    check_name: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    observed_value: Mapped[float | None] = mapped_column(Float)
    observed_unit: Mapped[str | None] = mapped_column(String(16))
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False)
    message: Mapped[str | None] = mapped_column(Text)
    checked_at = mapped_column(UTCDateTime, nullable=False, index=True)
    instance: Mapped[str] = mapped_column(String(128), nullable=False)
    # SCHEDULED results (the worker's) are what /health, uptime and the status page show; MANUAL
    # ones (`controlplane checks run`) are kept for the record only.
    source: Mapped[str] = mapped_column(String(16), nullable=False, default=SCHEDULED, server_default=SCHEDULED)


class CheckDay(db.Model):
    """Each check's results per UTC day, kept for the status page's 90-day uptime bars after the
    raw results are pruned. A day without a row is a gap (no data), never uptime."""

    __tablename__ = "check_days"

    check_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    unhealthy: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    degraded: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
