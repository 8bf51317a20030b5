"""Per-instance request counts flushed every few seconds, so alerting and uptime see all instances."""
from sqlalchemy import BigInteger, Float, Integer, String, Text
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


class RequestMinute(db.Model):
    """All instances' requests in one UTC minute: what alert rules read, so an evaluation costs
    the same whatever the traffic (one row a minute) instead of scanning every flush row.

    b0..b12 are non-cumulative counts per edge of LATENCY_BUCKETS, the last slower than the top.
    Each flush adds to its minute's row (an upsert), in the same transaction as its detail rows.
    """

    __tablename__ = "request_minutes"

    minute = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)  # 5xx
    duration_sum: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    b0: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b1: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b2: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b3: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b4: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b5: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b6: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b7: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b8: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b9: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b10: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b11: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    b12: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


BUCKET_COLUMNS = tuple(f"b{i}" for i in range(13))
