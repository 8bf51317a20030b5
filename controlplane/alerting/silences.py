"""Silences and maintenance windows: they suppress notifications, never state or history."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select

from ..extensions import db
from ..timeutil import as_utc, isoformat, utcnow
from .models import Silence

MAX_DURATION = timedelta(days=30)


class SilenceError(ValueError):
    pass


def create_silence(matchers: dict, starts_at: datetime | None, ends_at: datetime | None, author: str,
                   comment: str, kind: str = "silence", duration: timedelta | None = None) -> Silence:
    if not isinstance(matchers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in matchers.items()):
        raise SilenceError("matchers must be an object of label names to values (alertname is the rule)")
    if kind == "silence" and not matchers:
        raise SilenceError("a silence needs at least one matcher; a maintenance window silences everything")
    if not isinstance(author, str) or not author.strip() or not isinstance(comment, str) or not comment.strip():
        raise SilenceError("author and comment are required: say who and why")
    now = utcnow()
    starts_at = as_utc(starts_at) if starts_at else now
    ends_at = as_utc(ends_at) if ends_at else (starts_at + duration if duration else None)
    if ends_at is None or ends_at <= starts_at:
        raise SilenceError("the end must come after the start")
    if ends_at - starts_at > MAX_DURATION:
        raise SilenceError("at most 30 days: a longer silence is a disabled rule")
    row = Silence(matchers=json.dumps(matchers, sort_keys=True), starts_at=starts_at, ends_at=ends_at,
                  author=author.strip()[:120], comment=comment.strip()[:2000], kind=kind, created_at=now)
    db.session.add(row)
    db.session.commit()
    return row


def expire_silence(silence_id: int) -> Silence:
    row = db.session.get(Silence, silence_id)
    if row is None:
        raise SilenceError(f"no silence with id {silence_id}")
    now = utcnow()
    if as_utc(row.ends_at) > now:
        row.ends_at = max(now, as_utc(row.starts_at))
        db.session.commit()
    return row


def active_silences(now: datetime) -> list[Silence]:
    return list(db.session.execute(
        select(Silence).where(Silence.starts_at <= now, Silence.ends_at > now)).scalars())


def silencing(rule, now: datetime, silences: list[Silence] | None = None):
    """The first active silence whose matchers all hold for this rule's labels, or the scheduled
    maintenance covering the rule's status component; None when nothing silences it."""
    if rule.status_component:
        from ..status.maintenance import active

        for window in active(now):
            if rule.status_component in json.loads(window.components):
                return Silence(id=None, kind="maintenance", comment=f"scheduled maintenance: {window.name}",
                               matchers="{}", starts_at=window.scheduled_for, ends_at=window.scheduled_until,
                               author=window.author, created_at=window.created_at)
    labels = {**rule.labels, "alertname": rule.name}
    for silence in silences if silences is not None else active_silences(now):
        if all(labels.get(k) == v for k, v in json.loads(silence.matchers).items()):
            return silence
    return None


def describe(row: Silence) -> dict:
    return {"id": row.id, "kind": row.kind, "matchers": json.loads(row.matchers),
            "starts_at": isoformat(row.starts_at), "ends_at": isoformat(row.ends_at),
            "author": row.author, "comment": row.comment, "active": as_utc(row.starts_at) <= utcnow() < as_utc(row.ends_at)}
