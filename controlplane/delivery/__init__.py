"""The outbox: claim due messages, send them through Postal, retry or fail them.

Any number of workers may run `dispatch_due` at once: rows are claimed with
`SELECT ... FOR UPDATE SKIP LOCKED`, so two workers never claim the same row. A claim expires
after DELIVERY_CLAIM_SECONDS, so the messages of a worker that died mid-send are sent again
(delivery is at least once; Postal may see a message twice only in that case).
"""
from __future__ import annotations

import json
import logging
import random
from datetime import timedelta
from time import perf_counter

from flask import current_app
from sqlalchemy import and_, or_, select

from ..events.emit import message_event
from ..extensions import db
from ..gateway.models import Message, MessageRecipient
from ..postal import PostalRejected, PostalUnavailable
from ..timeutil import utcnow
from .metrics import EMAILS_SENT, RETRIES, SEND_DURATION

log = logging.getLogger(__name__)

DUE_STATES = ("queued", "scheduled", "retrying")
PATHS = {"message": "/api/v1/send/message", "raw": "/api/v1/send/raw"}


def claim_due(settings, worker: str) -> list[int]:
    """Claim up to DELIVERY_BATCH_SIZE due messages for `worker`; returns their primary keys."""
    now = utcnow()
    due = or_(
        and_(Message.state.in_(DUE_STATES), Message.next_attempt_at <= now),
        and_(Message.state == "sending", Message.claim_expires_at < now),  # a dead worker's claim
    )
    rows = db.session.execute(
        select(Message).where(due).order_by(Message.next_attempt_at)
        .limit(settings.delivery_batch_size).with_for_update(skip_locked=True)
    ).scalars().all()
    for row in rows:
        row.state = "sending"
        row.claimed_by = worker
        row.claim_expires_at = now + timedelta(seconds=settings.delivery_claim_seconds)
        row.attempts += 1
        row.updated_at = now
    db.session.commit()
    return [row.id for row in rows]


def dispatch_due(settings, client, worker: str, pool=None) -> int:
    """Claim and send one batch; returns how many messages were attempted.

    With a `pool` (a thread pool of DELIVERY_CONCURRENCY), the batch is sent in parallel, each
    send in its own app context and session: Postal answers in tens of milliseconds, so
    sending one at a time would cap a worker at a few dozen messages a second.
    """
    if client is None:
        return 0  # Postal unconfigured: messages stay queued and the postal check says so
    claimed = claim_due(settings, worker)
    if pool is None or len(claimed) < 2:
        for pk in claimed:
            send_one(settings, client, pk, worker)
        return len(claimed)
    app = current_app._get_current_object()

    def send_in_context(pk: int) -> None:
        with app.app_context():
            try:
                send_one(settings, client, pk, worker)
            finally:
                db.session.remove()

    for future in [pool.submit(send_in_context, pk) for pk in claimed]:
        future.result()  # re-raise a crash here, where the job runner logs it
    return len(claimed)


def send_one(settings, client, pk: int, worker: str) -> None:
    message = db.session.get(Message, pk)
    if message is None or message.state != "sending" or message.claimed_by != worker:
        return  # cancelled, or reclaimed by another worker after our claim expired
    started = perf_counter()
    try:
        data = client.call(PATHS[message.kind], json.loads(message.params))
    except PostalRejected as exc:
        _finish(message, "failed", exc.code, exc.message)
        message_event("message.failed", message, error={"code": exc.code, "message": exc.message})
        EMAILS_SENT.labels(status="failed").inc()
    except PostalUnavailable as exc:
        _retry_or_fail(settings, message, str(exc))
    else:
        _record_sent(message, data)
        EMAILS_SENT.labels(status="sent").inc()
    finally:
        SEND_DURATION.observe(perf_counter() - started)
    db.session.commit()


def _record_sent(message: Message, data: dict) -> None:
    message.postal_message_id = data.get("message_id")
    per_address = data.get("messages") or {}
    recipients = db.session.execute(
        select(MessageRecipient).where(MessageRecipient.message_pk == message.id)
    ).scalars()
    for recipient in recipients:
        postal = per_address.get(recipient.address) or {}
        recipient.postal_id = postal.get("id")
        recipient.postal_token = postal.get("token")
        recipient.status = "sent"
    message.sent_at = utcnow()
    _finish(message, "sent", None, None)
    message_event("message.sent", message)


def _retry_or_fail(settings, message: Message, reason: str) -> None:
    if message.attempts >= settings.delivery_max_attempts:
        _finish(message, "failed", "RetriesExhausted", f"gave up after {message.attempts} attempts: {reason}")
        message_event("message.failed", message, error={"code": "RetriesExhausted", "message": message.last_error})
        EMAILS_SENT.labels(status="failed").inc()
        return
    # Exponential backoff with full jitter, so a recovering Postal is not hit by a wave.
    ceiling = min(settings.delivery_backoff_seconds * 2 ** (message.attempts - 1), settings.delivery_backoff_max_seconds)
    delay = random.uniform(ceiling / 2, ceiling)
    message.state = "retrying"
    message.last_error = reason
    message.next_attempt_at = utcnow() + timedelta(seconds=delay)
    message.claimed_by = message.claim_expires_at = None
    message.updated_at = utcnow()
    RETRIES.inc()
    log.warning("delivery will retry", extra={"message_id": message.message_id, "attempt": message.attempts,
                                               "retry_in_s": round(delay, 1), "reason": reason})


def _finish(message: Message, state: str, code: str | None, error: str | None) -> None:
    message.state = state
    message.error_code = code
    message.last_error = error
    message.claimed_by = message.claim_expires_at = None
    message.updated_at = utcnow()
