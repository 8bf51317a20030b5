"""Per-instance request counts flushed every few seconds, so alerting and uptime see all instances."""
from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db


class RequestStat(db.Model):
    """Requests of one (route, method, status class) seen by one process in one flush period.

    `bucket_counts` is a JSON list of non-cumulative counts, one per edge of
    `telemetry.metrics.LATENCY_BUCKETS` plus a last one for slower than the top edge.
    """

    __tablename__ = "request_stats"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    instance: Mapped[str] = mapped_column(String(128), nullable=False)
    period_start = mapped_column(UTCDateTime, nullable=False)
    period_end = mapped_column(UTCDateTime, nullable=False, index=True)
    route: Mapped[str] = mapped_column(String(255), nullable=False)
    method: Mapped[str] = mapped_column(String(16), nullable=False)
    status_class: Mapped[str] = mapped_column(String(3), nullable=False)
    count: Mapped[int] = mapped_column(Integer, nullable=False)
    duration_sum: Mapped[float] = mapped_column(Float, nullable=False)
    bucket_counts: Mapped[str] = mapped_column(Text, nullable=False)
