"""Recording events: one row in the event log, plus one outbox row per subscribed webhook.

Called inside the transaction that changes the message, so an event exists exactly when the
change it reports does.
"""
from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from ..extensions import db
from ..timeutil import isoformat, utcnow
from .models import Event, Webhook, WebhookDelivery


def record_event(event_type: str, api_key_id: int | None, data: dict) -> Event:
    now = utcnow()
    event = Event(uuid=str(uuid.uuid4()), api_key_id=api_key_id, type=event_type, created_at=now, payload="")
    event.payload = json.dumps({"id": event.uuid, "type": event_type, "created_at": isoformat(now), "data": data})
    db.session.add(event)
    db.session.flush()
    if api_key_id is not None:
        hooks = db.session.execute(
            select(Webhook).where(Webhook.api_key_id == api_key_id, Webhook.enabled.is_(True),
                                  Webhook.deleted_at.is_(None))
        ).scalars()
        for hook in hooks:
            if hook.wants(event_type):
                db.session.add(WebhookDelivery(webhook_id=hook.id, event_pk=event.id, state="pending", attempts=0,
                                               next_attempt_at=now, created_at=now))
    return event


def message_event(event_type: str, message, **extra) -> Event:
    """A message.* event carrying what a subscriber needs to find the message again."""
    params = json.loads(message.params)
    data = {"message_id": message.message_id, "status": message.state, "from": message.from_address,
            "to": params.get("to", params.get("rcpt_to", [])), "subject": message.subject, "tag": message.tag,
            **extra}
    return record_event(event_type, message.api_key_id, data)
