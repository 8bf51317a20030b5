"""Component status and the page indicator, computed from check results and live requests.

Rules (in this order; the worst outcome wins):
1. Checks feeding the component (`component:` in checks.yaml), each at its newest result:
   a hard check unhealthy -> major_outage; any other check unhealthy -> partial_outage;
   a check degraded -> degraded_performance; a check with no recent result (stale, or never run)
   -> degraded_performance, since we cannot vouch for it; `unconfigured` checks do not count.
2. Components with `traffic: true`, over the last 5 minutes of user requests (probe and scrape
   routes are never counted: telemetry/traffic.py) once at least 20 were seen:
   5xx ratio >= 25% -> major_outage, >= 5% -> partial_outage, >= 1% -> degraded_performance;
   more than 5% of requests slower than 2 s (p95 above 2 s) -> degraded_performance.
3. Statuses declared by unresolved incidents count too (the worse one wins).
4. A component inside an active maintenance window is `under_maintenance`.
Page indicator, over components not under maintenance: `critical` when every one is in
major_outage, `major` when any is, `minor` when any is degraded or partially out, else `none`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..timeutil import as_utc
from .models import ComponentRecord

log = logging.getLogger("controlplane.status")

ORDER = ("operational", "degraded_performance", "partial_outage", "major_outage")
DESCRIPTIONS = {"none": "All Systems Operational", "minor": "Partially Degraded Service",
                "major": "Partial System Outage", "critical": "Major System Outage"}
TRAFFIC_WINDOW = timedelta(minutes=5)
MIN_REQUESTS = 20


@dataclass
class ComponentStatus:
    id: str
    name: str
    group: str | None
    description: str
    status: str = "operational"
    reasons: list[str] = field(default_factory=list)
    updated_at: datetime | None = None

    def worsen(self, status: str, reason: str) -> None:
        if ORDER.index(status) > ORDER.index(self.status):
            self.status = status
        self.reasons.append(reason)


def _from_checks(component: ComponentStatus, specs, view) -> None:
    for spec in specs:
        if spec.component != component.id:
            continue
        result = view.get(spec.name)
        state = result.status if result else "unknown"
        if result is not None and result.checked_at is not None:
            component.updated_at = max(filter(None, (component.updated_at, result.checked_at)))
        if state == "unhealthy":
            component.worsen("major_outage" if spec.hard else "partial_outage", f"{spec.name}: {result.message}")
        elif state == "degraded":
            component.worsen("degraded_performance", f"{spec.name}: {result.message}")
        elif state == "unknown":
            component.worsen("degraded_performance", f"{spec.name}: no recent result")


def _from_traffic(component: ComponentStatus, traffic: tuple[int, int, int] | None) -> None:
    if traffic is None:
        return
    total, errors, slow = traffic
    if total < MIN_REQUESTS:
        return
    ratio = errors / total
    for limit, status in ((0.25, "major_outage"), (0.05, "partial_outage"), (0.01, "degraded_performance")):
        if ratio >= limit:
            component.worsen(status, f"{ratio:.1%} of requests failed in the last 5 minutes")
            break
    if slow / total > 0.05:
        component.worsen("degraded_performance", f"{slow / total:.1%} of requests took over 2 s")


def recent_traffic(now: datetime) -> tuple[int, int, int]:
    """(requests, 5xx, slower than 2 s) over the last 5 minutes, from every instance."""
    from sqlalchemy import func, select

    from ..extensions import db
    from ..telemetry.metrics import LATENCY_BUCKETS
    from ..telemetry.models import BUCKET_COLUMNS, RequestMinute

    slower = [func.coalesce(func.sum(getattr(RequestMinute, c)), 0)
              for c in BUCKET_COLUMNS[LATENCY_BUCKETS.index(2.0) + 1:]]
    total, errors, *slow = db.session.execute(
        select(func.coalesce(func.sum(RequestMinute.count), 0), func.coalesce(func.sum(RequestMinute.errors), 0),
               *slower).where(RequestMinute.minute > now - TRAFFIC_WINDOW, RequestMinute.minute <= now)).one()
    return int(total), int(errors), int(sum(slow))


def component_statuses(config, view, traffic: tuple[int, int, int] | None,
                       declared: dict[str, str] | None = None,
                       maintained: set[str] | None = None) -> list[ComponentStatus]:
    """3. What an unresolved incident declares for a component also counts (the worse one wins).
    4. A component inside a maintenance window is `under_maintenance`, whatever else holds."""
    out = []
    for component in config.components:
        status = ComponentStatus(component.id, component.name, component.group, component.description)
        _from_checks(status, config.checks, view)
        if component.traffic:
            _from_traffic(status, traffic)
        stated = (declared or {}).get(component.id)
        if stated in ORDER:
            status.worsen(stated, "declared by an open incident")
        if component.id in (maintained or set()):
            status.status = "under_maintenance"
            status.reasons.append("scheduled maintenance in progress")
        out.append(status)
    return out


def page_indicator(statuses: list[ComponentStatus]) -> str:
    kinds = [s.status for s in statuses if s.status != "under_maintenance"]
    if kinds and all(k == "major_outage" for k in kinds):
        return "critical"
    if "major_outage" in kinds:
        return "major"
    if any(k in ("degraded_performance", "partial_outage") for k in kinds):
        return "minor"
    return "none"


@dataclass(frozen=True)
class Stamps:
    created_at: datetime
    updated_at: datetime


def remember(current: dict[str, str], now: datetime) -> dict[str, Stamps]:
    """When each component (id -> status now) first appeared and when its status last changed.

    The first sight of a component stores it; a status that differs from the stored one moves its
    `updated_at` to now. Both are idempotent across processes (insert-if-missing, update-if-
    different), so web instances agree. If the store cannot be written (a read-only or locked
    database) the page still answers, with `now` for what it could not remember."""
    try:
        stored = _stored(current, now)
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("could not record status component times: %s", exc)
        return {cid: Stamps(now, now) for cid in current}
    return {cid: Stamps(as_utc(row.created_at), as_utc(row.updated_at)) for cid, row in stored.items()}


def _stored(current: dict[str, str], now: datetime) -> dict[str, ComponentRecord]:
    rows = _load(current)
    missing = [{"id": cid, "status": status, "created_at": now, "updated_at": now}
               for cid, status in sorted(current.items()) if cid not in rows]
    changed = {cid: status for cid, status in current.items() if cid in rows and rows[cid].status != status}
    if not missing and not changed:
        return rows
    if missing:
        dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
        db.session.execute(dialect.insert(ComponentRecord).values(missing).on_conflict_do_nothing())
    for cid, status in sorted(changed.items()):
        db.session.execute(update(ComponentRecord).where(ComponentRecord.id == cid, ComponentRecord.status != status)
                           .values(status=status, updated_at=now))
    db.session.commit()
    return _load(current)


def _load(current: dict[str, str]) -> dict[str, ComponentRecord]:
    query = select(ComponentRecord).where(ComponentRecord.id.in_(list(current)))
    return {row.id: row for row in db.session.execute(query.execution_options(populate_existing=True)).scalars()}
