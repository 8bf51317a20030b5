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

from sqlalchemy import select

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
    limit = settings.delivery_batch_size
    # Two simple queries rather than one with OR, so each uses its index (ix_messages_outbox for
    # the due rows, ix_messages_due for claims a dead worker left behind).
    rows = db.session.execute(
        select(Message).where(Message.state.in_(DUE_STATES), Message.next_attempt_at <= now)
        .order_by(Message.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    ).scalars().all()
    if len(rows) < limit:
        rows += db.session.execute(
            select(Message).where(Message.state == "sending", Message.claim_expires_at < now)
            .limit(limit - len(rows)).with_for_update(skip_locked=True)
        ).scalars().all()
    claimed = []
    for row in rows:
        row.state = "sending"
        row.claimed_by = worker
        row.claim_expires_at = now + timedelta(seconds=settings.delivery_claim_seconds)
        row.attempts += 1
        row.updated_at = now
        claimed.append(row.id)  # read before commit expires the rows
    db.session.commit()
    return claimed


def dispatch_due(settings, client, worker: str, pool=None) -> int:
    """Claim one batch, send it, and record the outcomes; returns how many were attempted.

    Only the Postal calls run in parallel (on `pool`, DELIVERY_CONCURRENCY threads): Postal
    answers in tens of milliseconds, so one-at-a-time sending would cap a worker at a few dozen
    messages a second. The outcomes are then written in one transaction, which keeps the
    database work per message small.
    """
    if client is None:
        return 0  # Postal unconfigured: messages stay queued and the postal check says so
    claimed = claim_due(settings, worker)
    if not claimed:
        return 0
    batch = db.session.execute(
        select(Message.id, Message.kind, Message.params).where(Message.id.in_(claimed))
    ).all()
    db.session.commit()  # hold no transaction (nor connection) while waiting on Postal
    calls = [(row.id, PATHS[row.kind], row.params) for row in batch]
    mapper = pool.map if pool is not None and len(calls) > 1 else map
    outcomes = dict(mapper(lambda call: (call[0], _call_postal(client, call[1], call[2])), calls))
    _record_outcomes(settings, worker, outcomes)
    return len(claimed)


class Unsendable(Exception):
    """The message cannot become a Postal request at all: every attempt would fail the same way."""

    code = "Unsendable"


def _call_postal(client, path: str, stored_params: str):
    """Postal's data, or the PostalRejected / PostalUnavailable / Unsendable that stopped it."""
    started = perf_counter()
    try:
        return client.call(path, json.loads(stored_params))
    except (PostalRejected, PostalUnavailable) as exc:
        return exc
    except (UnicodeError, ValueError, TypeError) as exc:
        # Stored text that cannot be encoded, or parameters that cannot build a request: not
        # an outage, so retrying only repeats it. (httpx's own network errors are not these.)
        log.warning("message cannot be sent", extra={"reason": type(exc).__name__})
        return Unsendable(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug must not lose the batch: retry it like an outage
        log.exception("unexpected error calling Postal")
        return PostalUnavailable(f"{type(exc).__name__}: {exc}")
    finally:
        SEND_DURATION.observe(perf_counter() - started)


def _record_outcomes(settings, worker: str, outcomes: dict) -> None:
    messages = db.session.execute(
        select(Message).where(Message.id.in_(list(outcomes))).with_for_update()
    ).scalars().all()
    recipients: dict[int, list[MessageRecipient]] = {}
    for recipient in db.session.execute(
            select(MessageRecipient).where(MessageRecipient.message_pk.in_(list(outcomes)))).scalars():
        recipients.setdefault(recipient.message_pk, []).append(recipient)
    for message in messages:
        if message.state != "sending" or message.claimed_by != worker:
            continue  # cancelled meanwhile, or our claim expired and another worker took it
        outcome = outcomes[message.id]
        if isinstance(outcome, PostalRejected):
            _fail_at_once(message, outcome.code, outcome.message)
        elif isinstance(outcome, Unsendable):
            _fail_at_once(message, outcome.code, f"the message cannot be sent: {outcome}")
        elif isinstance(outcome, PostalUnavailable):
            _retry_or_fail(settings, message, str(outcome))
        else:
            _record_sent(message, outcome, recipients.get(message.id, []))
            EMAILS_SENT.labels(status="sent").inc()
    db.session.commit()


def _fail_at_once(message: Message, code: str, reason: str) -> None:
    _finish(message, "failed", code, reason)
    message_event("message.failed", message, error={"code": code, "message": reason})
    EMAILS_SENT.labels(status="failed").inc()


def _record_sent(message: Message, data: dict, recipients: list[MessageRecipient]) -> None:
    message.postal_message_id = data.get("message_id")
    per_address = data.get("messages") or {}
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
