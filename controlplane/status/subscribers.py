"""Subscribers: who hears of incidents and maintenance (notify.py sends what they hear).

Email subscribers confirm by double opt-in: the confirm link opens a page with a button (mail
scanners follow links, so a GET alone never confirms), and every mail carries an unsubscribe
link plus List-Unsubscribe headers for one-click unsubscribe (RFC 8058). Webhook subscribers are
added by operators.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..gateway.envelope import GatewayError
from ..timeutil import as_utc, isoformat, utcnow
from .incidents import IncidentError
from .models import StatusNotification, Subscriber

SYSTEM_KEY_NAME = "status page (system)"
EMAIL = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
CONFIRMATION_RESEND = timedelta(minutes=10)


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
    try:
        if due:
            row.confirmation_sent_at = now
            mail_subscriber(settings, row, f"Confirm your subscription to {settings.status_page_name} status",
                            _confirmation_text(settings, row), f"status-confirm:{row.token}:{int(now.timestamp())}")
        db.session.commit()
    except IntegrityError:  # the same new address from two requests at once: the other one mails
        db.session.rollback()
        row = db.session.execute(select(Subscriber).where(Subscriber.kind == "email", Subscriber.address == address)
                                 ).scalars().one()
        return Subscription(row, False)
    except GatewayError as exc:
        db.session.rollback()
        raise IncidentError(f"we cannot mail that address: {exc.message}") from None
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


def _unsubscribe_url(settings, row: Subscriber) -> str:
    return f"{public_url(settings)}/status/subscriptions/{row.token}/unsubscribe"


def _confirmation_text(settings, row: Subscriber) -> str:
    return (f"Someone (we hope you) asked to be told about incidents and maintenance on the "
            f"{settings.status_page_name} status page.\n\nTo confirm, open this link and press the button:\n"
            f"{public_url(settings)}/status/subscriptions/{row.token}/confirm\n\n"
            f"If it was not you, ignore this mail: nothing more will be sent.\n")


def mail_subscriber(settings, row: Subscriber, subject: str, text: str, idempotency_key: str) -> None:
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


