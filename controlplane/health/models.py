"""Stored health check results: the shared cache every web process reads, and uptime history."""
from sqlalchemy import Float, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db


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
