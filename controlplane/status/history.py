"""What the page shows of the past: per-day uptime from check results (check_days) and response
times over the last 24 hours (request_minutes).

Uptime of a component on a day = the share of its checks' scheduled results that day that were
not unhealthy (a diagnostic `controlplane checks run` is never counted: health/runner.py). A day
with no results is a gap (None): shown as "no data", never counted as up.
Response times (of user requests: probes are not traffic, telemetry/traffic.py) are the median and
p95 per 15-minute slot, interpolated within the latency buckets the way Prometheus'
histogram_quantile does.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..health.models import CheckDay
from ..timeutil import as_utc

SLOT = timedelta(minutes=15)


@dataclass(frozen=True)
class Day:
    day: date
    total: int
    down: int
    degraded: int

    @property
    def uptime(self) -> float | None:
        return None if not self.total else 1 - self.down / self.total


def daily_uptime(config, days: int, today: date) -> dict[str, list[Day]]:
    """Per component, `days` entries oldest first ending today; total 0 marks a gap."""
    first = today - timedelta(days=days - 1)
    component_of = {spec.name: spec.component for spec in config.checks if spec.component}
    counts = {c.id: [[0, 0, 0] for _ in range(days)] for c in config.components}
    rows = db.session.execute(select(CheckDay.check_name, CheckDay.day, CheckDay.total, CheckDay.unhealthy,
                                     CheckDay.degraded).where(CheckDay.day >= first, CheckDay.day <= today))
    for name, day, total, down, degraded in rows:
        series = counts.get(component_of.get(name))
        if series is not None:
            slot = series[(day - first).days]
            slot[0] += total
            slot[1] += down
            slot[2] += degraded
    return {component: [Day(first + timedelta(days=offset), *slot) for offset, slot in enumerate(series)]
            for component, series in counts.items()}


def uptime_grade(share: float | None) -> str:
    """How the bars, the page and the uptime badge colour a share: nodata, up, minor or down."""
    if share is None:
        return "nodata"
    return "up" if share >= 0.999 else "minor" if share >= 0.99 else "down"


def uptime_label(share: float | None) -> str:
    return "no data" if share is None else f"{share * 100:.2f}%"


def period_uptime(series: list[Day]) -> float | None:
    total = sum(d.total for d in series)
    return None if not total else 1 - sum(d.down for d in series) / total


def component_uptime(config, component_id: str, days: int, today: date) -> float | None:
    return period_uptime(daily_uptime(config, days, today)[component_id])


@dataclass(frozen=True)
class Slot:
    start: datetime
    count: int
    p50: float | None
    p95: float | None


def quantile(q: float, buckets: list[int], edges: tuple[float, ...]) -> float | None:
    """Linear interpolation inside the bucket holding the q-th request; above the top edge, the
    top edge (what histogram_quantile answers too)."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(edges):
                return edges[-1]
            lower = edges[index - 1] if index else 0.0
            return lower + (edges[index] - lower) * (rank - seen) / count
        seen += count
    return edges[-1]


def _slot_of(minute_column, start: datetime):
    """The 15-minute slot a minute falls in, counted from `start`, computed by the database so a
    day of minutes comes back as at most 96 rows."""
    from sqlalchemy import Integer, cast, func

    if db.engine.dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", minute_column - start) / SLOT.total_seconds()), Integer)
    # SQLite: julianday() reads the stored ISO text (offset included); the epsilon keeps a minute
    # exactly on a slot boundary from rounding down into the previous slot.
    return cast((func.julianday(minute_column) - func.julianday(start.isoformat())) * 96 + 1e-6, Integer)


def response_times(now: datetime, hours: int = 24) -> list[Slot]:
    """Oldest first, one slot per 15 minutes over the last `hours`; empty slots have count 0."""
    from sqlalchemy import func

    from ..telemetry.metrics import LATENCY_BUCKETS
    from ..telemetry.models import BUCKET_COLUMNS, RequestMinute

    now = as_utc(now)
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0) + SLOT
    start = end - timedelta(hours=hours)
    slots = [[0] * len(BUCKET_COLUMNS) for _ in range(hours * 4)]
    slot = _slot_of(RequestMinute.minute, start).label("slot")
    rows = db.session.execute(select(slot, *[func.sum(getattr(RequestMinute, c)) for c in BUCKET_COLUMNS])
                              .where(RequestMinute.minute >= start, RequestMinute.minute < end).group_by(slot))
    for index, *counts in rows:
        if 0 <= index < len(slots):
            slots[index] = [int(c or 0) for c in counts]
    return [Slot(start + SLOT * i, sum(b), quantile(0.5, b, LATENCY_BUCKETS), quantile(0.95, b, LATENCY_BUCKETS))
            for i, b in enumerate(slots)]
