"""The webhook fan-out job: claim due deliveries, send them, retry with backoff, disable dead hooks."""
from __future__ import annotations

import json
import logging
import random
from datetime import timedelta

from sqlalchemy import and_, or_, select

from ..extensions import db
from ..timeutil import utcnow
from .models import Event, Webhook, WebhookDelivery
from .sender import deliver

log = logging.getLogger(__name__)
CLAIM_SECONDS = 120


def claim(settings, limit: int = 50) -> list[int]:
    now = utcnow()
    rows = db.session.execute(
        select(WebhookDelivery).where(or_(
            and_(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now),
            and_(WebhookDelivery.state == "sending", WebhookDelivery.claim_expires_at < now),
        )).order_by(WebhookDelivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    ).scalars().all()
    for row in rows:
        row.state = "sending"
        row.attempts += 1
        row.claim_expires_at = now + timedelta(seconds=CLAIM_SECONDS)
    db.session.commit()
    return [row.id for row in rows]


def fan_out(settings, http) -> int:
    claimed = claim(settings)
    for pk in claimed:
        _send(settings, http, pk)
    return len(claimed)


def _send(settings, http, pk: int) -> None:
    row = db.session.get(WebhookDelivery, pk)
    hook = db.session.get(Webhook, row.webhook_id)
    if hook is None or not hook.enabled or hook.deleted_at is not None:
        row.state, row.last_error = "dead", "webhook disabled or deleted"
        db.session.commit()
        return
    event = db.session.get(Event, row.event_pk)
    envelope = json.loads(event.payload)
    timestamp = int(utcnow().timestamp())
    body = json.dumps({**envelope, "timestamp": timestamp}, separators=(",", ":")).encode()
    attempt = deliver(http, hook.url, hook.secret, body, timestamp, settings.webhook_allow_private_targets)
    row.last_status, row.last_error = attempt.status, attempt.error
    if attempt.ok:
        row.state, row.delivered_at = "delivered", utcnow()
        hook.failure_streak, hook.last_used_at = 0, utcnow()
    else:
        hook.failure_streak += 1
        if attempt.permanent or row.attempts >= settings.webhook_max_attempts:
            row.state = "dead"
        else:
            ceiling = min(settings.webhook_backoff_seconds * 2 ** (row.attempts - 1), 3600)
            row.state, row.next_attempt_at = "pending", utcnow() + timedelta(seconds=random.uniform(ceiling / 2, ceiling))
        if hook.failure_streak >= settings.webhook_disable_after_failures:
            hook.enabled = False
            hook.disabled_reason = f"disabled after {hook.failure_streak} failed deliveries in a row: {attempt.error}"
            log.warning("webhook disabled", extra={"webhook_id": hook.id, "reason": hook.disabled_reason})
    row.claim_expires_at = None
    db.session.commit()
