"""The notification outbox: evaluation writes triggers and resolves in the same transaction as the
state change (so a restart neither loses a page nor sends it twice); the notifier job sends them.
"""
from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ..extensions import db
from .channels import CHANNELS
from .models import AlertNotification
from .pagerduty import EVENTS_PER_MINUTE, dedup_key, trigger_payload

log = logging.getLogger("controlplane.alerting")
MAX_ATTEMPTS = 60  # with backoff capped at 10 minutes: about ten hours of trying
REPEAT_SECONDS = 60


def route_for(rule, settings) -> str | None:
    """A rule's `pagerduty_route` label, else its severity, else the default; None: unconfigured."""
    routes = settings.pagerduty_routes
    for name in (rule.labels.get("pagerduty_route"), rule.severity, "default"):
        if name and name in routes:
            return name
    return None


def enqueue(transition, settings) -> list[AlertNotification]:
    """Outbox rows for a firing or resolved transition, one per configured channel (none: an
    explicit no-op; the state and history still record the alert)."""
    from .silences import silencing

    if transition.name not in ("firing", "resolved"):
        return []
    silence = silencing(transition.rule, transition.at)
    if silence is not None and transition.name == "firing":
        log.info("alert silenced", extra={"rule": transition.rule.name, "silence": silence.id,
                                          "kind": silence.kind, "comment": silence.comment})
        return []  # a resolve still goes out: PagerDuty drops one for an alert it never opened
    action = "trigger" if transition.name == "firing" else "resolve"
    payload = json.dumps(trigger_payload(transition.rule, transition.value, transition.at, settings,
                                         settings.otel_service_name)
                         if action == "trigger" else {"summary": f"{transition.rule.name} resolved"})
    route = route_for(transition.rule, settings)
    targets = ([("pagerduty", route)] if route else []) + [
        (name, name) for name, channel in CHANNELS.items() if channel.configured(settings)]
    rows = []
    for channel, target in targets:
        row = AlertNotification(channel=channel, rule=transition.rule.name, action=action,
                                dedup_key=dedup_key(transition.rule.name, transition.labels_key), route=target,
                                payload=payload if channel != "pagerduty" or action == "trigger" else "{}",
                                state="pending", attempts=0,
                                repeats_left=settings.alert_resolve_repeats if action == "resolve"
                                and channel == "pagerduty" else 0,
                                next_attempt_at=transition.at, created_at=transition.at)
        db.session.add(row)
        rows.append(row)
    return rows


def send_due(settings, sender, now: datetime, limit: int = 50) -> int:
    """Send what is due, one attempt each; returns how many were attempted."""
    rows = db.session.execute(
        select(AlertNotification).where(AlertNotification.state == "pending", AlertNotification.next_attempt_at <= now)
        .order_by(AlertNotification.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    ).scalars().all()
    sent_recently = dict(db.session.execute(
        select(AlertNotification.route, func.count()).where(AlertNotification.sent_at > now - timedelta(minutes=1))
        .group_by(AlertNotification.route)).all())
    attempted = 0
    for row in rows:
        if row.channel != "pagerduty":
            attempted += 1
            row.attempts += 1
            _settle(row, CHANNELS[row.channel].send(row, settings), now, sent_recently)
            continue
        key = settings.pagerduty_routes.get(row.route)
        if key is None:
            row.state, row.last_error = "failed", f"routing key for route {row.route!r} is no longer configured"
            continue
        if sent_recently.get(row.route, 0) >= EVENTS_PER_MINUTE:
            row.next_attempt_at = now + timedelta(seconds=random.uniform(5, 15))  # PagerDuty's limit, kept
            continue
        attempted += 1
        row.attempts += 1
        _settle(row, sender.send(key, row.action, row.dedup_key, json.loads(row.payload) or None), now, sent_recently)
    db.session.commit()
    return attempted


def _settle(row: AlertNotification, outcome, now: datetime, sent_recently: dict) -> None:
    """Record one attempt's outcome: sent (or repeated later), retried with backoff, or failed."""
    if outcome.ok:
        sent_recently[row.route] = sent_recently.get(row.route, 0) + 1
        row.sent_at, row.last_error = now, None
        if row.repeats_left > 0:  # a resolve goes out again a little later
            row.repeats_left -= 1
            row.next_attempt_at = now + timedelta(seconds=REPEAT_SECONDS)
        else:
            row.state = "sent"
        return
    row.last_error = outcome.error
    if outcome.permanent or row.attempts >= MAX_ATTEMPTS:
        row.state = "failed"
        log.error("notification failed", extra={"channel": row.channel, "rule": row.rule, "action": row.action,
                                                "error": outcome.error})
        return
    ceiling = min(15 * 2 ** (row.attempts - 1), 600)
    row.next_attempt_at = now + timedelta(seconds=random.uniform(ceiling / 2, ceiling))
    log.warning("notification will be retried", extra={"channel": row.channel, "rule": row.rule,
                                                       "error": outcome.error})
