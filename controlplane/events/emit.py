"""Recording events: one row in the event log, plus one outbox row per subscribed webhook.

Called inside the transaction that changes the message, so an event exists exactly when the
change it reports does.
"""
from __future__ import annotations

import json
import uuid

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..extensions import db
from ..timeutil import isoformat, utcnow
from .models import Event, Webhook, WebhookDelivery


def record_event(event_type: str, api_key_id: int | None, data: dict) -> Event:
    now = utcnow()
    event = Event(uuid=str(uuid.uuid4()), api_key_id=api_key_id, type=event_type, created_at=now, payload="")
    event.payload = json.dumps({"id": event.uuid, "type": event_type, "created_at": isoformat(now), "data": data})
    db.session.add(event)
    hooks = [h for h in _active_webhooks(api_key_id) if h.wants(event_type)] if api_key_id is not None else []
    if hooks:
        db.session.flush()  # only for the event's id; most events have no subscriber
        for hook in hooks:
            db.session.add(WebhookDelivery(webhook_id=hook.id, event_pk=event.id, state="pending", attempts=0,
                                           next_attempt_at=now, created_at=now))
    return event


def has_active_webhooks():
    """SQL for "this key has an active webhook", for the caller's own key lookup to carry along."""
    from sqlalchemy import exists

    from ..gateway.models import ApiKey

    return exists().where(Webhook.api_key_id == ApiKey.id, Webhook.enabled.is_(True), Webhook.deleted_at.is_(None))


def note_webhooks(api_key_id: int, active: bool) -> None:
    """Remember, for this transaction, whether a key has webhooks (learnt while authenticating),
    so a send by a key without subscribers costs no lookup of its own."""
    if not active:
        db.session.info.setdefault("active_webhooks", {})[api_key_id] = []


def _active_webhooks(api_key_id: int) -> list[Webhook]:
    """A key's webhooks, looked up once per transaction (a delivery batch emits many events)."""
    cache = db.session.info.setdefault("active_webhooks", {})
    if api_key_id not in cache:
        cache[api_key_id] = db.session.execute(
            select(Webhook).where(Webhook.api_key_id == api_key_id, Webhook.enabled.is_(True),
                                  Webhook.deleted_at.is_(None))
        ).scalars().all()
    return cache[api_key_id]


@sa_event.listens_for(Session, "after_transaction_end")
def _forget_webhooks(session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended: a webhook may have changed
        session.info.pop("active_webhooks", None)


def message_event(event_type: str, message, **extra) -> Event:
    """A message.* event carrying what a subscriber needs to find the message again."""
    params = json.loads(message.params)
    data = {"message_id": message.message_id, "status": message.state, "from": message.from_address,
            "to": params.get("to", params.get("rcpt_to", [])), "subject": message.subject, "tag": message.tag,
            **extra}
    return record_event(event_type, message.api_key_id, data)
