"""The notification outbox: evaluation writes triggers and resolves in the same transaction as the
state change (so a restart neither loses a page nor sends it twice); the notifier job sends them,
each through its channel in the registry (channels.CHANNELS).

A channel that cannot work (channels' `problem`, from configuration) holds its notifications
rather than failing them: the reason is written on each row once, the row waits HOLD_SECONDS
between looks, and it goes out once the configuration is fixed. /health and
`controlplane_alert_channel_misconfigured` say so meanwhile.

Each route (a PagerDuty routing key by its setting's name, the webhook, the email) has a budget in
the shared database (routes.py): every attempt counts against a channel's per-minute limit, and a
429 pauses the whole route. A notification whose route is paused, full or held by another
notifier is put off, not attempted; the other routes' notifications go out meanwhile.
"""
from __future__ import annotations

import json
import logging
import random
import time
from datetime import datetime, timedelta

from sqlalchemy import select

from ..dbtypes import begin_as_writer
from ..extensions import db
from ..timeutil import as_utc
from .channels import CHANNELS
from .models import AlertNotification
from .pagerduty import dedup_key, trigger_payload
from .routes import forget_old_attempts, hold_routes

log = logging.getLogger("controlplane.alerting")
MAX_ATTEMPTS = 60  # with backoff capped at 10 minutes: about ten hours of trying
REPEAT_SECONDS = 60
HOLD_SECONDS = 60


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
    targets = [(name, route) for name, channel in CHANNELS.items()
               if (route := channel.route(transition.rule, settings)) is not None]
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


def send_due(settings, now: datetime, limit: int = 50) -> int:
    """Send what is due, one attempt each, within each route's budget (routes.py); returns how many
    notifications were handled (attempted, held or put off): none left due means 0."""
    clock = _clock_from(now)
    begin_as_writer()  # on SQLite: the batch reads, then writes (an alert email in a savepoint)
    rows = db.session.execute(
        select(AlertNotification).where(AlertNotification.state == "pending", AlertNotification.next_attempt_at <= now)
        .order_by(AlertNotification.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    ).scalars().all()
    routes = hold_routes({(row.channel, row.route) for row in rows}, now)
    problems = {name: channel.problem(settings) for name, channel in CHANNELS.items()}  # settings only: once
    for row in rows:
        channel = CHANNELS.get(row.channel)
        problem = problems[row.channel] if channel else f"no channel {row.channel!r} in this version"
        if problem:
            _hold(row, problem, now)
            continue
        route = routes[(row.channel, row.route)]
        if (later := route.wait_until(now, channel.per_minute)) is not None:
            row.next_attempt_at = later
            continue
        _attempt(row, channel, route, settings, now, clock)
    if rows:
        forget_old_attempts(now)
    db.session.commit()
    return len(rows)


def _clock_from(now: datetime):
    """`now`, moving on as the batch runs."""
    started = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - started)


def _attempt(row: AlertNotification, channel, route, settings, now: datetime, clock) -> None:
    """One attempt, counted against its route, then settled."""
    row.attempts += 1
    outcome = channel.send(row, settings)
    # Dated when the answer came, not when the batch began: dated early, a slow batch's attempts
    # would leave the sliding minute early and let more through than the limit.
    route.record(clock(), outcome)
    _settle(row, outcome, now)
    if outcome.throttled and row.state == "pending":  # its own backoff, but never inside the pause
        row.next_attempt_at = max(as_utc(row.next_attempt_at), as_utc(route.row.paused_until))


def _hold(row: AlertNotification, problem: str, now: datetime) -> None:
    """Keep a notification for a channel that cannot work; said once per notification."""
    if row.last_error != problem:
        log.error("notification held: its channel cannot work", extra={
            "channel": row.channel, "rule": row.rule, "action": row.action, "error": problem})
    row.last_error = problem
    row.next_attempt_at = now + timedelta(seconds=HOLD_SECONDS)


def _settle(row: AlertNotification, outcome, now: datetime) -> None:
    """Record one attempt's outcome: sent (or repeated later), retried with backoff, or failed."""
    if outcome.ok:
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
