"""Scheduled maintenance. The status follows the clock, so the transitions are automatic:
`scheduled` before the window, `in_progress` during it, `completed` after it (or when cancelled).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..timeutil import as_utc, isoformat, utcnow
from .incidents import IncidentError, affected_objects
from .models import Maintenance

MAX_WINDOW = timedelta(days=7)


def maintenance_status(row: Maintenance, now: datetime) -> str:
    if row.cancelled_at is not None or now >= as_utc(row.scheduled_until):
        return "completed"
    return "in_progress" if now >= as_utc(row.scheduled_for) else "scheduled"


def schedule(config, name, body, components, starts: datetime | None, ends: datetime | None,
             author: str) -> Maintenance:
    from .incidents import _text

    name, body = _text(name, "name", 200), _text(body, "body", 10_000)
    known = {c.id for c in config.components}
    if not isinstance(components, list) or not components or not all(isinstance(c, str) for c in components):
        raise IncidentError("components must be a non-empty list of component ids")
    unknown = [c for c in components if c not in known]
    if unknown:
        raise IncidentError(f"unknown component(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if starts is None or ends is None or ends <= starts:
        raise IncidentError("scheduled_for and scheduled_until are required, the end after the start")
    if ends - starts > MAX_WINDOW:
        raise IncidentError("a maintenance window lasts at most 7 days")
    now = utcnow()
    row = Maintenance(name=name, body=body, components=json.dumps(components), scheduled_for=starts,
                      scheduled_until=ends, author=author[:120], created_at=now)
    db.session.add(row)
    db.session.commit()
    return row


def cancel(maintenance_id: int) -> Maintenance:
    row = db.session.get(Maintenance, maintenance_id)
    if row is None:
        raise IncidentError(f"no maintenance {maintenance_id}", 404)
    if row.cancelled_at is None:
        row.cancelled_at = utcnow()
        db.session.commit()
    return row


def active(now: datetime) -> list[Maintenance]:
    return list(db.session.execute(select(Maintenance).where(
        Maintenance.scheduled_for <= now, Maintenance.scheduled_until > now, Maintenance.cancelled_at.is_(None))
    ).scalars())


def components_under_maintenance(now: datetime) -> set[str]:
    return {c for row in active(now) for c in json.loads(row.components)}


def listing(kind: str, now: datetime) -> list[Maintenance]:
    """all, upcoming (not started) or active (in progress), newest window first, at most 50."""
    query = select(Maintenance).order_by(Maintenance.scheduled_for.desc()).limit(50)
    if kind == "upcoming":
        query = query.where(Maintenance.scheduled_for > now, Maintenance.cancelled_at.is_(None))
    elif kind == "active":
        query = query.where(Maintenance.scheduled_for <= now, Maintenance.scheduled_until > now,
                            Maintenance.cancelled_at.is_(None))
    return list(db.session.execute(query).scalars())


# What Statuspage posts when a window starts and ends by itself.
STARTED_TEXT = "Scheduled maintenance is currently in progress. We will provide updates as necessary."
COMPLETED_TEXT = "The scheduled maintenance has been completed."


def describe(row: Maintenance, config, page_id: str, now: datetime, components: dict[str, dict] | None = None,
             base: str | None = None) -> dict:
    """A scheduled maintenance as Statuspage shows it. Its updates follow the clock: `scheduled`
    (the announcement) when it was created, `in_progress` at the window's start, `completed` at its
    end or cancellation. `components` and `base` as for incidents.describe."""
    names = {c.id: c.name for c in config.components}
    status = maintenance_status(row, now)
    ended = _ended_at(row) if status == "completed" else None
    return {"id": str(row.id), "name": row.name, "status": status, "impact": "maintenance",
            "scheduled_for": isoformat(row.scheduled_for), "scheduled_until": isoformat(row.scheduled_until),
            "created_at": isoformat(row.created_at), "updated_at": isoformat(ended or _last_change(row, now)),
            "monitoring_at": None, "resolved_at": isoformat(ended), "started_at": isoformat(row.scheduled_for),
            "shortlink": f"{base}/status" if base else None, "page_id": page_id, "body": row.body,
            "incident_updates": _updates(row, status, ended),
            "components": affected_objects([{"id": c, "name": names.get(c, c)} for c in json.loads(row.components)],
                                           components)}


def _ended_at(row: Maintenance) -> datetime:
    if row.cancelled_at is not None and as_utc(row.cancelled_at) < as_utc(row.scheduled_until):
        return as_utc(row.cancelled_at)
    return as_utc(row.scheduled_until)


def _last_change(row: Maintenance, now: datetime) -> datetime:
    return as_utc(row.scheduled_for) if now >= as_utc(row.scheduled_for) else as_utc(row.created_at)


def _updates(row: Maintenance, status: str, ended: datetime | None) -> list[dict]:
    """Newest first, as incidents' updates are."""
    steps = [("scheduled", row.body, as_utc(row.created_at))]
    if status != "scheduled" and (ended is None or ended > as_utc(row.scheduled_for)):
        steps.append(("in_progress", STARTED_TEXT, as_utc(row.scheduled_for)))
    if ended is not None:
        steps.append(("completed", "This maintenance was cancelled." if row.cancelled_at is not None
                      and as_utc(row.cancelled_at) < as_utc(row.scheduled_until) else COMPLETED_TEXT, ended))
    return [{"id": f"{row.id}-{step}", "status": step, "body": body, "incident_id": str(row.id),
             "created_at": isoformat(at), "updated_at": isoformat(at), "display_at": isoformat(at),
             "affected_components": [], "deliver_notifications": True, "custom_tweet": None, "tweet_id": None}
            for step, body, at in reversed(steps)]
