"""Route budgets for the notification outbox, kept in the shared database so that every notifier
(on every worker and instance) sees the same ones.

A route is where a channel sends (a PagerDuty route by its setting's name, `webhook`, `email`).
- A channel with a per-minute limit (`Channel.per_minute`: PagerDuty's 120 events per routing key)
  has every request counted against it over a sliding minute, whatever the answer was. The far end
  counts throttled and failed requests too, so counting only accepted ones lets a retry storm
  through exactly when the far end is struggling.
- A 429 (`Outcome.throttled`) pauses the whole route for the Retry-After it came with, else
  PAUSE_SECONDS: every request sent into a throttle only prolongs it. Other routes and channels go
  on meanwhile.
- A notifier spends a route's budget only while it holds the route's row (`FOR UPDATE SKIP
  LOCKED`, released at its commit); another notifier puts that route's notifications off for a
  moment rather than wait for it.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..timeutil import as_utc
from .models import AlertAttempt, AlertRoute

log = logging.getLogger("controlplane.alerting")
WINDOW = timedelta(minutes=1)
PAUSE_SECONDS = 30  # a 429 that does not say for how long
PAUSE_MAX_SECONDS = 600  # a longer Retry-After is not trusted: pages matter more than politeness
BUSY_SECONDS = (1, 3)  # another notifier holds the route: look again shortly
KEEP = timedelta(minutes=5)  # attempts older than the window are kept a little, for whoever looks


@dataclass
class Route:
    """One route as this notifier holds it for one batch."""

    channel: str
    name: str
    row: AlertRoute | None  # None: another notifier holds it now
    attempts: list[datetime]  # the sliding minute's, oldest first, this batch's included
    waiting: int = 0  # notifications put off because the minute is full

    def wait_until(self, now: datetime, per_minute: int | None) -> datetime | None:
        """When a notification on this route may be tried, if not now."""
        if self.row is None:
            return now + timedelta(seconds=random.uniform(*BUSY_SECONDS))
        paused_until = as_utc(self.row.paused_until)
        if paused_until is not None and paused_until > now:
            return paused_until
        if per_minute and len(self.attempts) >= per_minute:
            return self._room_at(per_minute)
        return None

    def _room_at(self, per_minute: int) -> datetime:
        """When the minute has room for one more, each waiting notification taking the next
        place: as the oldest attempts leave the minute, one by one."""
        place = min(len(self.attempts) - per_minute + self.waiting, len(self.attempts) - 1)
        self.waiting += 1
        return self.attempts[place] + WINDOW

    def record(self, at: datetime, outcome) -> None:
        """Count one attempt made at `at`; a 429 pauses the route."""
        db.session.add(AlertAttempt(channel=self.channel, route=self.name, at=at))
        self.attempts.append(at)
        if outcome.throttled:
            self.pause(at, outcome.retry_after, outcome.error)

    def pause(self, at: datetime, retry_after: float | None, reason: str | None) -> None:
        seconds = min(max(retry_after or PAUSE_SECONDS, 1), PAUSE_MAX_SECONDS)
        self.row.paused_until, self.row.pause_reason = at + timedelta(seconds=seconds), reason
        log.warning("notification route paused: the channel is throttling it", extra={
            "channel": self.channel, "route": self.name, "seconds": seconds, "error": reason})


def hold_routes(keys: set[tuple[str, str]], now: datetime) -> dict[tuple[str, str], Route]:
    """The routes of one batch (channel, route), each locked for this notifier where it is free,
    with the attempts of the minute before `now`."""
    _add_missing(keys)
    routes = {}
    for channel, name in keys:
        row = db.session.execute(select(AlertRoute).filter_by(channel=channel, route=name)
                                 .with_for_update(skip_locked=True)).scalar_one_or_none()
        routes[(channel, name)] = Route(channel, name, row, _attempts_since(channel, name, now - WINDOW))
    return routes


def forget_old_attempts(now: datetime) -> None:
    db.session.execute(delete(AlertAttempt).where(AlertAttempt.at < now - KEEP))


def _attempts_since(channel: str, route: str, since: datetime) -> list[datetime]:
    return [as_utc(at) for at in db.session.execute(
        select(AlertAttempt.at).filter_by(channel=channel, route=route).where(AlertAttempt.at > since)
        .order_by(AlertAttempt.at)).scalars()]


def _add_missing(keys: set[tuple[str, str]]) -> None:
    """A row for each route seen for the first time. Only missing ones are inserted, in one order:
    an insert that meets another notifier's new, uncommitted row waits for its commit, and two
    notifiers inserting in different orders could wait for each other."""
    if not keys:
        return
    known = {tuple(row) for row in db.session.execute(
        select(AlertRoute.channel, AlertRoute.route).where(tuple_(AlertRoute.channel, AlertRoute.route).in_(keys)))}
    missing = [{"channel": channel, "route": route} for channel, route in sorted(keys - known)]
    if missing:
        dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
        db.session.execute(dialect.insert(AlertRoute).values(missing).on_conflict_do_nothing())
