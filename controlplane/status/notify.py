"""Telling subscribers, exactly once per subscriber, of every incident create, update and resolve
and every maintenance start and end.

The path of one notification:
1. The change writes a `status_events` row in its own transaction (incidents.py), or the leader's
   `status-notify` job records a maintenance window starting or ending (`record_maintenance`).
   The event's unique key makes each happen once.
2. `fan_out` gives every subscriber confirmed before the event one `status_notifications` row;
   the unique (subscriber, event) pair means a second fan-out adds nothing.
3. `send_due` sends pending rows. Email goes through our own gateway: the row is marked sent in
   the transaction that queues the message, and the message's idempotency key is the row's id,
   so neither a crash nor a retry can mail twice. Webhooks go through the event webhooks' signed,
   SSRF-guarded sender and are retried with backoff; a receiver whose answer was lost may see one
   again, with the same `id` in the body to drop it by.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, insert, literal, select

from ..dbtypes import UTCDateTime
from ..extensions import db
from ..timeutil import as_utc, isoformat, utcnow
from .models import Incident, IncidentUpdate, Maintenance, StatusEvent, StatusNotification, Subscriber
from .subscribers import mail_subscriber, public_url

log = logging.getLogger("controlplane.status")
MAX_ATTEMPTS = 10
BATCH = 100


def record_incident_update(incident: Incident, update_row: IncidentUpdate, first: bool) -> None:
    """In the caller's transaction: the incident's create, update or resolve, once."""
    kind = "incident.created" if first else "incident.resolved" if update_row.status == "resolved" else "incident.updated"
    db.session.add(StatusEvent(key=f"incident-update:{update_row.id}", kind=kind, incident_id=incident.id,
                               update_id=update_row.id, created_at=update_row.created_at))


def record_maintenance(now: datetime) -> int:
    """Record windows that have started or ended (or were cancelled while running) since the last
    look; a window cancelled before it began never starts. Windows over for more than a day are
    not looked at, so a long-stopped worker does not announce stale work."""
    rows = db.session.execute(select(Maintenance).where(
        Maintenance.scheduled_for <= now, Maintenance.scheduled_until > now - timedelta(days=1))).scalars().all()
    if not rows:
        return 0
    known = set(db.session.execute(select(StatusEvent.key).where(
        StatusEvent.maintenance_id.in_([r.id for r in rows]))).scalars())
    added = 0
    for row in rows:
        cancelled = as_utc(row.cancelled_at) if row.cancelled_at else None
        started = cancelled is None or cancelled > as_utc(row.scheduled_for)
        ended = cancelled is not None or now >= as_utc(row.scheduled_until)
        for kind, happened in (("started", started), ("completed", started and ended)):
            key = f"maintenance:{row.id}:{kind}"
            if happened and key not in known:
                db.session.add(StatusEvent(key=key, kind=f"maintenance.{kind}", maintenance_id=row.id, created_at=now))
                added += 1
    db.session.commit()
    return added


def fan_out(now: datetime) -> int:
    """One notification per confirmed subscriber per new event, in one INSERT ... SELECT each."""
    events = db.session.execute(select(StatusEvent).where(StatusEvent.fanned_out_at.is_(None))
                                .order_by(StatusEvent.id).limit(BATCH)).scalars().all()
    for event in events:
        already = exists().where(StatusNotification.subscriber_id == Subscriber.id,
                                 StatusNotification.event_id == event.id)
        audience = select(Subscriber.id, literal(event.id), literal("pending"), literal(0),
                          literal(now, UTCDateTime)).where(
            Subscriber.confirmed_at.is_not(None), Subscriber.confirmed_at <= event.created_at,
            Subscriber.unsubscribed_at.is_(None), ~already)
        db.session.execute(insert(StatusNotification).from_select(
            ["subscriber_id", "event_id", "state", "attempts", "next_attempt_at"], audience))
        event.fanned_out_at = now
    db.session.commit()
    return len(events)


# --- sending --------------------------------------------------------------------------------------

def event_document(settings, event: StatusEvent) -> dict:
    """What a webhook receives, and what a mail says in words."""
    from .incidents import describe as describe_incident
    from .maintenance import describe as describe_maintenance

    base = public_url(settings)
    document = {"id": event.key, "type": event.kind, "created_at": isoformat(event.created_at),
                "page": {"id": settings.status_page_id, "name": settings.status_page_name, "url": f"{base}/status"}}
    if event.incident_id is not None:
        incident = db.session.get(Incident, event.incident_id)
        described = describe_incident(incident, settings.status_page_id)
        document["incident"] = described
        document["incident_update"] = next(u for u in described["incident_updates"] if u["id"] == str(event.update_id))
        document["url"] = f"{base}/incidents/{incident.id}"
    else:
        maintenance = db.session.get(Maintenance, event.maintenance_id)
        config = current_app.extensions["controlplane.health"].config
        document["scheduled_maintenance"] = describe_maintenance(maintenance, config, settings.status_page_id,
                                                                 as_utc(event.created_at))
        document["url"] = f"{base}/status"
    return document


def _subject_and_text(settings, document: dict) -> tuple[str, str]:
    page = settings.status_page_name
    if "incident" in document:
        incident, latest = document["incident"], document["incident_update"]
        label = {"incident.created": "New incident", "incident.resolved": "Resolved"}.get(document["type"], "Update")
        subject = f"[{page} status] {label}: {incident['name']}"
        affected = "".join(f"\n  {c['name']}: {c['new_status'].replace('_', ' ')}" for c in latest["affected_components"])
        text = (f"{incident['name']}\nStatus: {latest['status']} (impact: {incident['impact']})\n\n{latest['body']}\n"
                + (f"\nAffected components:{affected}\n" if affected else "") + f"\nDetails: {document['url']}\n")
    else:
        maintenance = document["scheduled_maintenance"]
        started = document["type"] == "maintenance.started"
        subject = f"[{page} status] Maintenance {'started' if started else 'completed'}: {maintenance['name']}"
        names = ", ".join(c["name"] for c in maintenance["components"])
        text = (f"{maintenance['name']}\n{'In progress' if started else 'Completed'}: scheduled "
                f"{maintenance['scheduled_for']} to {maintenance['scheduled_until']}\nComponents: {names}\n\n"
                f"{maintenance['body']}\n\nDetails: {document['url']}\n")
    return subject[:200], text


def _send_one(settings, http, row: StatusNotification, subscriber: Subscriber, document: dict) -> str | None:
    """None when sent; else why not (raised as ValueError for a permanent refusal)."""
    if subscriber.kind == "email":
        from ..gateway.envelope import GatewayError

        subject, text = _subject_and_text(settings, document)
        row.state, row.sent_at, row.attempts = "sent", utcnow(), row.attempts + 1
        try:
            mail_subscriber(settings, subscriber, subject, text, f"status-notification:{row.id}")
        except GatewayError as exc:  # our own gateway refuses this mail: trying again changes nothing
            raise ValueError(f"the gateway refused the mail: {exc.message}") from None
        return None
    from ..events.sender import deliver

    body = json.dumps(document).encode()
    attempt = deliver(http, subscriber.address, subscriber.secret or "", body, int(utcnow().timestamp()),
                      settings.webhook_allow_private_targets)
    if attempt.ok:
        return None
    if attempt.permanent or (attempt.status is not None and 400 <= attempt.status < 500
                             and attempt.status not in (408, 429)):
        raise ValueError(attempt.error or f"HTTP {attempt.status}")
    return attempt.error or f"HTTP {attempt.status}"


def send_due(settings, http, now: datetime) -> int:
    """Send up to BATCH due notifications; returns how many were tried."""
    rows = db.session.execute(select(StatusNotification, Subscriber, StatusEvent)
                              .join(Subscriber, Subscriber.id == StatusNotification.subscriber_id)
                              .join(StatusEvent, StatusEvent.id == StatusNotification.event_id)
                              .where(and_(StatusNotification.state == "pending", StatusNotification.next_attempt_at <= now))
                              .order_by(StatusNotification.id).limit(BATCH)).all()
    documents: dict[int, dict] = {}
    for row, subscriber, event in rows:
        try:
            if event.id not in documents:
                documents[event.id] = event_document(settings, event)
            error = _send_one(settings, http, row, subscriber, documents[event.id])
        except ValueError as exc:
            db.session.rollback()
            row.state, row.last_error, row.attempts = "failed", str(exc)[:2000], row.attempts + 1
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
            db.session.rollback()
            log.warning("status notification %s failed: %s: %s", row.id, type(exc).__name__, exc)
            error = f"{type(exc).__name__}: {exc}"
        else:
            if error is None:
                row.state, row.sent_at = "sent", utcnow()
        if row.state == "pending" and error is not None:
            row.attempts += 1
            row.last_error = error[:2000]
            if row.attempts >= MAX_ATTEMPTS:
                row.state = "failed"
            else:  # 30 s, 1 min, 2 min ... capped at an hour
                row.next_attempt_at = utcnow() + timedelta(seconds=min(3600, 30 * 2 ** (row.attempts - 1)))
        db.session.commit()
    return len(rows)


def notify_backlog_seconds(now: datetime) -> float:
    """How long our own notifier has fallen behind: the oldest event not yet fanned out, or the
    oldest due email (mail only needs a row in our outbox). Webhook retries do not count: one
    subscriber's dead endpoint is theirs to fix, not a reason to page us."""
    from sqlalchemy import func

    unfanned = db.session.execute(select(func.min(StatusEvent.created_at))
                                  .where(StatusEvent.fanned_out_at.is_(None))).scalar()
    due_mail = db.session.execute(
        select(func.min(StatusNotification.next_attempt_at))
        .join(Subscriber, Subscriber.id == StatusNotification.subscriber_id)
        .where(StatusNotification.state == "pending", StatusNotification.next_attempt_at <= now,
               Subscriber.kind == "email")).scalar()
    oldest = [as_utc(t) for t in (unfanned, due_mail) if t is not None]
    return max(0.0, (now - min(oldest)).total_seconds()) if oldest else 0.0


def notification_families():
    """Subscribers and their notifications by state, fleet-wide (read at scrape time): a growing
    `pending` or any `failed` means subscribers are not hearing what the page says."""
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import case, func

    subscribers = GaugeMetricFamily("controlplane_status_subscribers", "Status page subscribers.",
                                    labels=["kind", "state"])
    state = case((Subscriber.unsubscribed_at.is_not(None), "unsubscribed"),
                 (Subscriber.confirmed_at.is_not(None), "confirmed"), else_="unconfirmed")
    counts = dict(((kind, label), n) for kind, label, n in db.session.execute(
        select(Subscriber.kind, state, func.count()).group_by(Subscriber.kind, state)))
    for kind in ("email", "webhook"):
        for label in ("unconfirmed", "confirmed", "unsubscribed"):
            subscribers.add_metric([kind, label], counts.get((kind, label), 0))
    yield subscribers
    notifications = GaugeMetricFamily("controlplane_status_notifications",
                                      "Status notifications to subscribers by state.", labels=["state"])
    by_state = dict(db.session.execute(select(StatusNotification.state, func.count())
                                       .group_by(StatusNotification.state)).all())
    for label in ("pending", "sent", "failed"):
        notifications.add_metric([label], by_state.get(label, 0))
    yield notifications
    backlog = GaugeMetricFamily("controlplane_status_notify_backlog_seconds",
                                "How far the status notifier is behind (0 when caught up).")
    backlog.add_metric([], notify_backlog_seconds(utcnow()))
    yield backlog
