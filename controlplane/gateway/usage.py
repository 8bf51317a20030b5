"""Usage analytics: messages per key per UTC day by outcome, and GET /api/v1/usage."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Date, case, cast, delete, func, select

from ..extensions import db
from ..timeutil import utcnow
from .envelope import GatewayError
from .models import Message, UsageDay
from .schemas import UsageQuery

# Which current states count as reaching each outcome.
OUTCOMES = {
    "sent": ("sent", "delivered", "delayed", "bounced", "held"),
    "delivered": ("delivered",),
    "bounced": ("bounced",),
    "failed": ("failed",),
}


def _utc_day(column):
    if db.engine.dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite stores UTC text


def roll_up(days: int = 2) -> int:
    """Recompute the last `days` UTC days from the messages table (idempotent); returns rows written."""
    start = datetime.combine(utcnow().date() - timedelta(days=days - 1), datetime.min.time(), tzinfo=timezone.utc)
    day = _utc_day(Message.created_at).label("day")
    counts = [func.count().label("accepted")] + [
        func.sum(case((Message.state.in_(states), 1), else_=0)).label(name) for name, states in OUTCOMES.items()
    ]
    rows = db.session.execute(
        select(Message.api_key_id, day, *counts).where(Message.created_at >= start, Message.api_key_id.is_not(None))
        .group_by(Message.api_key_id, day)
    ).all()
    db.session.execute(delete(UsageDay).where(UsageDay.day >= start.date()))
    now = utcnow()
    for row in rows:
        day_value = row.day if isinstance(row.day, date) else date.fromisoformat(str(row.day))
        db.session.add(UsageDay(api_key_id=row.api_key_id, day=day_value, accepted=row.accepted,
                                sent=row.sent or 0, delivered=row.delivered or 0, bounced=row.bounced or 0,
                                failed=row.failed or 0, updated_at=now))
    db.session.commit()
    return len(rows)


def usage_report(principal, asked: UsageQuery) -> dict:
    today = utcnow().date()
    first = asked.from_ or today - timedelta(days=29)
    last = asked.to or today
    if first > last:
        raise GatewayError("InvalidDate", "from must not be after to", 400)
    query = select(UsageDay).where(UsageDay.day >= first, UsageDay.day <= last)
    if principal.id is not None and not principal.scope_set & {"admin", "read"}:
        query = query.where(UsageDay.api_key_id == principal.id)
    elif asked.key_id is not None:
        query = query.where(UsageDay.api_key_id == asked.key_id)
    rows = db.session.execute(query.order_by(UsageDay.day, UsageDay.api_key_id)).scalars().all()
    fields = ("accepted", "sent", "delivered", "bounced", "failed")
    days = [{"day": r.day.isoformat(), "key_id": r.api_key_id, **{f: getattr(r, f) for f in fields}} for r in rows]
    totals = {f: sum(d[f] for d in days) for f in fields}
    return {"from": first.isoformat(), "to": last.isoformat(), "days": days, "totals": totals}
