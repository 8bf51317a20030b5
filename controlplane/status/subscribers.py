"""Subscribers: told once of every incident update and every maintenance start and end.

The path of one notification:
1. The change writes a `status_events` row in its own transaction (incidents.py), or the leader's
   `status-notify` job records a maintenance window starting or ending (`record_maintenance`).
   The event's unique key makes each happen once.
2. `fan_out` gives every subscriber confirmed before the event one `status_notifications` row;
   the unique (subscriber, event) pair means a second fan-out adds nothing.
3. `send_due` sends pending rows. Email goes through our own gateway: the row is marked sent in
   the transaction that queues the message, and the message's idempotency key is the row's id,
   so neither a crash nor a retry can mail twice. Webhooks are signed like event webhooks and
   retried with backoff; a receiver that answered but whose answer was lost may see one again,
   with the same `id` in the body to drop it by.

Email subscribers confirm by double opt-in: the confirm link opens a page with a button (mail
scanners follow links, so a GET alone never confirms), and every mail carries an unsubscribe
link plus List-Unsubscribe headers for one-click unsubscribe (RFC 8058).
"""
from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, insert, literal, select, update

from ..dbtypes import UTCDateTime
from ..extensions import db
from ..timeutil import as_utc, isoformat, utcnow
from .incidents import IncidentError
from .models import Incident, IncidentUpdate, Maintenance, StatusEvent, StatusNotification, Subscriber

log = logging.getLogger("controlplane.status")
SYSTEM_KEY_NAME = "status page (system)"
EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
CONFIRMATION_RESEND = timedelta(minutes=10)
MAX_ATTEMPTS = 10
BATCH = 100


def public_url(settings) -> str:
    """Links in mail point here: STATUS_PAGE_URL, or the development server's address."""
    return settings.status_page_url or "http://127.0.0.1:8080"


# --- subscribing ---------------------------------------------------------------------------------

@dataclass
class Subscription:
    subscriber: Subscriber
    confirmation_due: bool  # a confirmation mail should go out now


def subscribe_email(settings, address) -> Subscription:
    """Start (or restart) a double opt-in. Answers the same whether or not the address was known,
    so the form cannot be used to learn who subscribes; confirmations are resent at most every
    10 minutes."""
    if not isinstance(address, str) or len(address) > 320 or not EMAIL.match(address.strip()):
        raise IncidentError("email must be an email address such as you@example.com")
    address = address.strip().lower()
    now = utcnow()
    row = db.session.execute(select(Subscriber).where(Subscriber.kind == "email", Subscriber.address == address)
                             ).scalars().first()
    if row is None:
        row = Subscriber(kind="email", address=address, token=secrets.token_urlsafe(24), created_at=now)
        db.session.add(row)
    elif row.unsubscribed_at is not None:  # subscribing again: confirm again, with a fresh link
        row.unsubscribed_at, row.confirmed_at, row.token = None, None, secrets.token_urlsafe(24)
    due = row.confirmed_at is None and (row.confirmation_sent_at is None
                                        or now - as_utc(row.confirmation_sent_at) >= CONFIRMATION_RESEND)
    if due:
        row.confirmation_sent_at = now
        _mail(settings, row, "Confirm your subscription to " + settings.status_page_name + " status",
              _confirmation_text(settings, row), f"status-confirm:{row.token}:{int(now.timestamp())}")
    db.session.commit()
    return Subscription(row, due)


def add_webhook(settings, url, secret=None) -> Subscriber:
    """Webhook subscribers are added by operators (no opt-in: the operator vouches for the URL),
    and are checked against the same SSRF rules as event webhooks."""
    from ..events.ssrf import UnsafeTarget, check_url

    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2048:
        raise IncidentError("url must be an http:// or https:// URL")
    try:
        check_url(url, settings.webhook_allow_private_targets)
    except UnsafeTarget as exc:
        raise IncidentError(f"url refused: {exc}") from None
    if secret is not None and (not isinstance(secret, str) or not 16 <= len(secret) <= 128):
        raise IncidentError("secret must be 16 to 128 characters")
    existing = db.session.execute(select(Subscriber).where(Subscriber.kind == "webhook", Subscriber.address == url)
                                  ).scalars().first()
    if existing is not None and existing.unsubscribed_at is None:
        raise IncidentError(f"{url} is already subscribed (id {existing.id})", 409)
    now = utcnow()
    row = existing or Subscriber(kind="webhook", address=url, token=secrets.token_urlsafe(24), created_at=now)
    row.secret, row.confirmed_at, row.unsubscribed_at = secret or secrets.token_urlsafe(32), now, None
    db.session.add(row)
    db.session.commit()
    return row


def by_token(token: str) -> Subscriber:
    row = db.session.execute(select(Subscriber).where(Subscriber.token == token)).scalars().first() if token else None
    if row is None:
        raise IncidentError("this link is not valid (any more): subscribe again from the status page", 404)
    return row


def confirm(token: str) -> Subscriber:
    row = by_token(token)
    if row.unsubscribed_at is not None:
        raise IncidentError("this subscription was cancelled: subscribe again from the status page", 410)
    if row.confirmed_at is None:
        row.confirmed_at = utcnow()
        db.session.commit()
    return row


def unsubscribe(token: str) -> Subscriber:
    row = by_token(token)
    if row.unsubscribed_at is None:
        row.unsubscribed_at = utcnow()
        # What was queued for them and not yet sent is dropped, not sent after they left.
        db.session.execute(update(StatusNotification).where(
            StatusNotification.subscriber_id == row.id, StatusNotification.state == "pending"
        ).values(state="failed", last_error="unsubscribed"))
        db.session.commit()
    return row


def remove(subscriber_id: int) -> Subscriber:
    row = db.session.get(Subscriber, subscriber_id)
    if row is None:
        raise IncidentError(f"no subscriber {subscriber_id}", 404)
    return unsubscribe(row.token)


def listing() -> list[Subscriber]:
    return list(db.session.execute(select(Subscriber).order_by(Subscriber.id)).scalars())


def describe(row: Subscriber) -> dict:
    state = "unsubscribed" if row.unsubscribed_at else "confirmed" if row.confirmed_at else "unconfirmed"
    return {"id": row.id, "kind": row.kind, "address": row.address, "state": state,
            "created_at": isoformat(row.created_at), "confirmed_at": isoformat(row.confirmed_at),
            "unsubscribed_at": isoformat(row.unsubscribed_at)}


# --- events ---------------------------------------------------------------------------------------

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
        audience = select(Subscriber.id, literal(event.id), literal("pending"), literal(0), literal(now, UTCDateTime)).where(
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
        document["scheduled_maintenance"] = describe_maintenance(maintenance, current_app.extensions["controlplane.health"].config,
                                                                 settings.status_page_id,
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


def _unsubscribe_url(settings, row: Subscriber) -> str:
    return f"{public_url(settings)}/status/subscriptions/{row.token}/unsubscribe"


def _confirmation_text(settings, row: Subscriber) -> str:
    return (f"Someone (we hope you) asked to be told about incidents and maintenance on the "
            f"{settings.status_page_name} status page.\n\nTo confirm, open this link and press the button:\n"
            f"{public_url(settings)}/status/subscriptions/{row.token}/confirm\n\n"
            f"If it was not you, ignore this mail: nothing more will be sent.\n")


def _mail(settings, row: Subscriber, subject: str, text: str, idempotency_key: str) -> None:
    """Queue one mail through our own gateway, in the caller's transaction (accept commits it)."""
    from ..gateway.keys import system_key
    from ..gateway.sending import accept, validate_message

    unsubscribe_link = _unsubscribe_url(settings, row)
    if row.confirmed_at is not None:
        text += f"\n--\nUnsubscribe: {unsubscribe_link}\n"
    key = system_key(settings, SYSTEM_KEY_NAME, "system:status")
    params = {"to": [row.address], "from": settings.status_email_from, "subject": subject, "plain_body": text,
              "tag": "status", "headers": {"List-Unsubscribe": f"<{unsubscribe_link}>",
                                           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
    accept(key, "message", validate_message(params, key, settings.max_attachment_bytes), None, idempotency_key)


def _send_one(settings, http, row: StatusNotification, subscriber: Subscriber, document: dict) -> str | None:
    """None when sent; else why not (raised as ValueError for a permanent refusal)."""
    if subscriber.kind == "email":
        subject, text = _subject_and_text(settings, document)
        row.state, row.sent_at, row.attempts = "sent", utcnow(), row.attempts + 1
        _mail(settings, subscriber, subject, text, f"status-notification:{row.id}")
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
