"""Who watches the alert engine: the shared record of its last completed evaluation, the heartbeat
ping, the `alerting` health assessment and the AlertingStalled page.

One row (`alert_watchdog`, id 1) that every process reads:
- the leader's `alert-evaluate` job writes `evaluated_at` after each completed pass, then pings
  ALERT_HEARTBEAT_URL (when set) so an outside watcher notices when the whole service is dead;
- web processes (watcher.py) take turns on it (`watched_at` is a lease: one tick per tick interval
  across every instance), judge it, and page PagerDuty themselves when no evaluation completed
  within ALERT_WATCHDOG_SECONDS: dedup key DEDUP_KEY, one trigger when it stalls and one resolve
  when it resumes (`page_state`), so any number of web instances raise one incident and the loss
  of every worker still pages.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter
from sqlalchemy import Integer, String, Text, or_, update
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import UTCDateTime
from ..extensions import db
from ..jobs.records import live_worker_counts
from ..outbound import http_client
from ..timeutil import as_utc, isoformat, utcnow
from .channels import CHANNELS, route_for

log = logging.getLogger("controlplane.alerting")
ROW_ID = 1
PAGE_NAME = "AlertingStalled"
DEDUP_KEY = f"controlplane/{PAGE_NAME}"
RUNBOOK_ANCHOR = "alerting-stalled"
HEARTBEAT_TIMEOUT_SECONDS = 5.0
HEARTBEAT_PINGS = Counter("controlplane_alert_heartbeat_pings_total",
                          "Heartbeat pings to ALERT_HEARTBEAT_URL after an evaluation, by outcome.", ["outcome"])
WATCHDOG_PAGES = Counter("controlplane_alert_watchdog_pages_total",
                         "AlertingStalled events the watchdog sent to PagerDuty, by action and outcome.",
                         ["action", "outcome"])


class AlertWatchdog(db.Model):
    """The single row (id 1) every instance reads; created by the migration."""

    __tablename__ = "alert_watchdog"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at = mapped_column(UTCDateTime, nullable=False)  # "never evaluated" counts from here
    evaluated_at = mapped_column(UTCDateTime)
    evaluated_by: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at = mapped_column(UTCDateTime)
    heartbeat_error: Mapped[str | None] = mapped_column(Text)  # None after a ping that worked
    # JSON {channel: problem} as the last alerting check saw it (for the gauge on every instance).
    channel_problems: Mapped[str | None] = mapped_column(Text)
    watched_at = mapped_column(UTCDateTime)  # the lease: the newest watchdog tick, by anyone
    watched_by: Mapped[str | None] = mapped_column(String(128))
    page_state: Mapped[str] = mapped_column(String(16), nullable=False, default="ok")  # ok, triggered
    paged_at = mapped_column(UTCDateTime)
    page_error: Mapped[str | None] = mapped_column(Text)


def watchdog_row() -> AlertWatchdog:
    row = db.session.get(AlertWatchdog, ROW_ID)
    if row is None:  # a database migrated before the row existed, or a test that deleted it
        row = AlertWatchdog(id=ROW_ID, created_at=utcnow(), page_state="ok")
        db.session.add(row)
        db.session.flush()
    return row


# ---------------------------------------------------------------- the worker's side


def evaluation_completed(app, settings, instance: str, now: datetime | None = None) -> None:
    """Called by the `alert-evaluate` job after `evaluate` returned: record the pass for every
    instance, then ping the heartbeat URL. A failing ping is logged and counted, never raised."""
    now = now or utcnow()
    row = watchdog_row()
    row.evaluated_at, row.evaluated_by = now, instance
    db.session.commit()
    if not settings.alert_heartbeat_url:
        return  # unconfigured: an explicit no-op, shown as such by /health and `controlplane config`
    error = ping_heartbeat(app, settings.alert_heartbeat_url)
    HEARTBEAT_PINGS.labels(outcome="failed" if error else "ok").inc()
    if error:
        log.warning("heartbeat ping failed", extra={"error": error})
    row = watchdog_row()
    row.heartbeat_at, row.heartbeat_error = now, error
    db.session.commit()


def ping_heartbeat(app, url: str) -> str | None:
    """POST to the heartbeat URL (healthchecks.io and Dead Man's Snitch take it); the error, or None."""
    try:
        with http_client(app, HEARTBEAT_TIMEOUT_SECONDS) as http:
            response = http.post(url, content=b"")
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:  # whatever it is, evaluation goes on
        return f"{type(exc).__name__}: {exc}"[:500]
    return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"


# ---------------------------------------------------------------- the assessment


@dataclass(frozen=True)
class Assessment:
    """What the watchdog knows at `now`: how old the last evaluation is, who could evaluate, and
    what stops alerts from getting out."""

    now: datetime
    bound_seconds: float
    evaluated_at: datetime | None
    evaluated_by: str | None
    since: datetime  # evaluated_at, or when the watchdog row was made when nothing ever ran
    live_workers: int
    leaders: int
    problems: dict
    heartbeat_configured: bool
    heartbeat_at: datetime | None
    heartbeat_error: str | None

    @property
    def age_seconds(self) -> float:
        return max(0.0, (self.now - self.since).total_seconds())

    @property
    def stalled(self) -> bool:
        return self.age_seconds > self.bound_seconds

    @property
    def worst(self) -> str | None:
        """unhealthy when stalled, degraded when it is about to be or a page could not get out."""
        if self.stalled:
            return "unhealthy"
        if self.leaders == 0 or self.problems or (self.heartbeat_configured and self.heartbeat_error):
            return "degraded"
        return None

    def message(self) -> str:
        parts = [self._evaluation()]
        if self.leaders == 0:
            parts.append(f"no live leader ({self.live_workers} live worker(s)): nothing evaluates the rules")
        parts += [f"channel {name}: {problem}" for name, problem in self.problems.items()]
        parts.append(self._heartbeat())
        return "; ".join(parts)

    def _evaluation(self) -> str:
        if self.evaluated_at is None:
            what = f"no evaluation has completed in {self.age_seconds:.0f}s"
        else:
            what = f"last evaluation {self.age_seconds:.0f}s ago by {self.evaluated_by}"
        if self.stalled:
            return f"alert evaluation stalled: {what} (bound {self.bound_seconds:g}s)"
        return what

    def _heartbeat(self) -> str:
        if not self.heartbeat_configured:
            return "heartbeat ping: unconfigured"
        if self.heartbeat_at is None:
            return "heartbeat ping: not sent yet"
        ago = (self.now - self.heartbeat_at).total_seconds()
        if self.heartbeat_error:
            return f"heartbeat ping failed {ago:.0f}s ago: {self.heartbeat_error}"
        return f"heartbeat ping ok {ago:.0f}s ago"


def assess(settings, problems: dict, now: datetime | None = None) -> Assessment:
    now = now or utcnow()
    row = watchdog_row()
    live, leading = live_worker_counts(settings.worker_stale_seconds, now)
    evaluated_at = as_utc(row.evaluated_at)
    return Assessment(now=now, bound_seconds=settings.alert_watchdog_seconds, evaluated_at=evaluated_at,
                      evaluated_by=row.evaluated_by, since=evaluated_at or as_utc(row.created_at),
                      live_workers=live, leaders=leading, problems=problems,
                      heartbeat_configured=bool(settings.alert_heartbeat_url), heartbeat_at=as_utc(row.heartbeat_at),
                      heartbeat_error=row.heartbeat_error)


def record_channel_problems(problems: dict) -> None:
    """What the latest alerting check found, for the misconfiguration gauge on every instance."""
    watchdog_row().channel_problems = json.dumps(problems, sort_keys=True)
    db.session.commit()


# ---------------------------------------------------------------- the web side: the page


def claim_tick(instance: str, now: datetime, tick_seconds: float) -> bool:
    """Take this tick for `instance` unless another instance took one within `tick_seconds`:
    N web instances watch at the pace of one."""
    watchdog_row()
    claimed = db.session.execute(
        update(AlertWatchdog).where(AlertWatchdog.id == ROW_ID, or_(
            AlertWatchdog.watched_at.is_(None), AlertWatchdog.watched_at <= now - timedelta(seconds=tick_seconds)))
        .values(watched_at=now, watched_by=instance)).rowcount
    db.session.commit()
    return claimed == 1


def page_if_stalled(app, settings, now: datetime | None = None) -> str | None:
    """Trigger AlertingStalled when evaluation stalled, resolve it when it resumed; returns the
    action sent, if any. A page that could not go out is retried on the next tick."""
    view = assess(settings, {}, now)
    row = watchdog_row()
    wanted = "triggered" if view.stalled else "ok"
    if row.page_state == wanted:
        return None
    action = "trigger" if view.stalled else "resolve"
    error = _send_page(app, settings, action, view)
    WATCHDOG_PAGES.labels(action=action, outcome="failed" if error else "sent").inc()
    row = watchdog_row()
    if error is None:
        row.page_state, row.paged_at, row.page_error = wanted, view.now, None
        log.log(logging.ERROR if view.stalled else logging.INFO, "watchdog page sent",
                extra={"rule": PAGE_NAME, "action": action, "detail": view.message()})
    elif error != row.page_error:  # said once per reason, not once per tick
        row.page_error = error
        log.error("watchdog page not sent", extra={"rule": PAGE_NAME, "action": action, "error": error,
                                                   "detail": view.message()})
    db.session.commit()
    return action if error is None else None


def _send_page(app, settings, action: str, view: Assessment) -> str | None:
    problem = CHANNELS["pagerduty"].problem(settings)
    if problem:
        return problem
    route = _page_route(settings)
    if route is None:
        return "PagerDuty is not configured (PAGERDUTY_ROUTING_KEY): nobody is paged"
    sender = app.extensions["controlplane.pagerduty"]
    payload = _page_payload(app, settings, view) if action == "trigger" else None
    outcome = sender.send(settings.pagerduty_routes[route], action, DEDUP_KEY, payload)
    return None if outcome.ok else outcome.error


class _StalledPage:
    """AlertingStalled is not a rule (the engine it watches is what stopped), but it routes like
    a critical one."""

    name = PAGE_NAME
    severity = "critical"
    labels = {"severity": "critical", "team": "platform"}


def _page_route(settings) -> str | None:
    return route_for(_StalledPage, settings)


def _page_payload(app, settings, view: Assessment) -> dict:
    runbook = _runbook_url(app.extensions["controlplane.alert_rules"])
    details = {"last_evaluated_at": isoformat(view.evaluated_at), "evaluated_by": view.evaluated_by,
               "age_seconds": round(view.age_seconds), "bound_seconds": view.bound_seconds,
               "live_workers": view.live_workers, "leaders": view.leaders, "runbook_url": runbook}
    payload = {"summary": f"{PAGE_NAME}: {view.message()}"[:1024], "source": settings.otel_service_name,
               "severity": "critical", "timestamp": view.now.isoformat(), "component": "alerting",
               "group": "platform", "class": "watchdog", "custom_details": details}
    if runbook:
        payload["links"] = [{"href": runbook, "text": "Runbook"}]
    return payload


def _runbook_url(rules) -> str | None:
    """Beside the rules' runbooks: their document, this page's section."""
    for rule in rules.rules:
        url = rule.annotations.get("runbook_url")
        if url:
            return f"{url.split('#', 1)[0]}#{RUNBOOK_ANCHOR}"
    return None


# ---------------------------------------------------------------- metrics


def watchdog_families():
    """Scrape-time series from the shared row: right whichever process produced them."""
    from flask import current_app
    from prometheus_client.core import GaugeMetricFamily

    row = db.session.get(AlertWatchdog, ROW_ID)
    problems = dict(current_app.extensions["controlplane.channel_problems"])
    if row is not None and row.channel_problems:
        problems.update(json.loads(row.channel_problems))
    misconfigured = GaugeMetricFamily("controlplane_alert_channel_misconfigured",
                                      "1 when an alert channel cannot work (see the alerting health check).",
                                      labels=["channel"])
    for name in CHANNELS:
        misconfigured.add_metric([name], 1.0 if name in problems else 0.0)
    yield misconfigured
    last = GaugeMetricFamily("controlplane_alert_last_evaluation_timestamp_seconds",
                             "When the alert engine last completed an evaluation.")
    if row is not None and row.evaluated_at is not None:
        last.add_metric([], as_utc(row.evaluated_at).timestamp())
    yield last
    stalled = GaugeMetricFamily("controlplane_alert_watchdog_paged",
                                "1 while the watchdog's AlertingStalled page is open in PagerDuty.")
    stalled.add_metric([], 1.0 if row is not None and row.page_state == "triggered" else 0.0)
    yield stalled
