"""Notifier channels, one registry: CHANNELS. Contract of each channel:

- `route(rule, settings) -> str | None`: where a rule's notifications go on this channel (None:
  not configured for it, an explicit no-op);
- `problem(settings) -> str | None`: why the channel cannot send at all, known without a network
  call (said at start-up; the outbox holds its notifications meanwhile);
- `rule_problem(settings, rules) -> str | None`: rules that cannot reach it (reported, not held:
  the other rules' pages still go out);
- `probe(settings) -> str | None`: what only the network tells (health check, `alerts test`);
- `send(row, settings) -> Outcome` (ok, permanent, error, throttled): one attempt; the outbox
  retries, and pauses the whole route when it was throttled (a 429).
- `per_minute`: the most requests a route takes in a minute, answered or not (None: no limit).

- pagerduty: PagerDuty Events API v2 through the app's one PagerDutySender
  (`app.extensions["controlplane.pagerduty"]`, built once; tests replace it there).
- webhook: a JSON POST to ALERT_WEBHOOK_URL signed like subscriber webhooks (HMAC-SHA256 over the
  body with ALERT_WEBHOOK_SECRET, a timestamp header), through the same SSRF-guarded chokepoint.
- email: to ALERT_EMAIL_TO through our own gateway (a message in the outbox, delivered by the
  worker through Postal); straight to SMTP_HOST instead when Postal is not usable, which is
  exactly when an alert about Postal must still get out.
"""
from __future__ import annotations

import json
import logging
import smtplib
import socket
from email.message import EmailMessage

from ..timeutil import isoformat
from .pagerduty import EVENTS_PER_MINUTE, Outcome, PagerDutySender

log = logging.getLogger("controlplane.alerting")
SYSTEM_KEY_NAME = "alerting (system)"
PROBE_TIMEOUT_SECONDS = 3


def _subject(row, body: dict) -> str:
    what = {"trigger": "FIRING", "resolve": "RESOLVED", "change": "CHANGE"}.get(row.action, row.action.upper())
    return f"[{what}] {row.rule}: {body.get('summary') or ''}".strip()[:200]


def _document(row) -> dict:
    payload = json.loads(row.payload or "{}")
    return {"type": f"alert.{row.action}", "rule": row.rule, "dedup_key": row.dedup_key,
            "summary": payload.get("summary") or f"{row.rule} {row.action}", "payload": payload,
            "created_at": isoformat(row.created_at)}


def route_for(rule, settings) -> str | None:
    """A rule's `pagerduty_route` label, else its severity, else the default; None: unconfigured."""
    routes = settings.pagerduty_routes
    for name in (rule.labels.get("pagerduty_route"), rule.severity, "default"):
        if name and name in routes:
            return name
    return None


class Channel:
    """Defaults: no rate limit of its own, and nothing that can be wrong with it."""

    name: str
    per_minute: int | None = None

    @staticmethod
    def problem(settings) -> str | None:
        return None

    @staticmethod
    def rule_problem(settings, rules) -> str | None:
        return None

    @staticmethod
    def probe(settings) -> str | None:
        return None


class PagerDutyChannel(Channel):
    name = "pagerduty"
    per_minute = EVENTS_PER_MINUTE  # per routing key: PagerDuty's own limit

    @staticmethod
    def route(rule, settings) -> str | None:
        return route_for(rule, settings)

    @staticmethod
    def problem(settings) -> str | None:
        if not settings.pagerduty_routes:
            return None  # unconfigured: nothing pages, and /health and `config` say so
        return PagerDutySender.url_problem(settings.pagerduty_events_url)

    @staticmethod
    def rule_problem(settings, rules) -> str | None:
        unrouted = [rule.name for rule in rules.rules if route_for(rule, settings) is None]
        if settings.pagerduty_routes and unrouted:
            return (f"no routing key for rule(s) {', '.join(unrouted)}: set PAGERDUTY_ROUTING_KEY (the default) "
                    f"or PAGERDUTY_ROUTING_KEY_<ROUTE> for their pagerduty_route label or severity")
        return None

    def send(self, row, settings) -> Outcome:
        from flask import current_app

        key = settings.pagerduty_routes.get(row.route)
        if key is None:
            return Outcome(False, permanent=True, error=f"routing key for route {row.route!r} is no longer configured")
        sender = current_app.extensions["controlplane.pagerduty"]
        return sender.send(key, row.action, row.dedup_key, json.loads(row.payload) or None)


class WebhookChannel(Channel):
    name = "webhook"

    @staticmethod
    def route(rule, settings) -> str | None:
        return "webhook" if settings.alert_webhook_url else None

    @staticmethod
    def problem(settings) -> str | None:
        url = settings.alert_webhook_url
        if url and not url.startswith("https://") and not settings.webhook_allow_private_targets:
            return f"ALERT_WEBHOOK_URL must be an https:// URL, got {url!r}"
        return None

    @staticmethod
    def probe(settings) -> str | None:
        from ..events.ssrf import UnsafeTarget, check_url

        if not settings.alert_webhook_url:
            return None
        try:
            check_url(settings.alert_webhook_url, settings.webhook_allow_private_targets)
        except UnsafeTarget as exc:
            return f"ALERT_WEBHOOK_URL is refused by the SSRF guard: {exc}"
        return None

    def send(self, row, settings) -> Outcome:
        from flask import current_app

        from ..events.sender import deliver
        from ..outbound import http_client

        body = json.dumps(_document(row)).encode()
        with http_client(current_app, settings.webhook_timeout_seconds) as http:
            attempt = deliver(http, settings.alert_webhook_url, settings.alert_webhook_secret or "", body,
                              int(row.created_at.timestamp()), settings.webhook_allow_private_targets)
        if attempt.ok:
            return Outcome(True)
        permanent = attempt.permanent or (attempt.status is not None and 400 <= attempt.status < 500
                                          and attempt.status not in (408, 429))
        return Outcome(False, permanent=permanent, error=attempt.error, throttled=attempt.status == 429)


class EmailChannel(Channel):
    """Addresses are validated by the gateway when the mail is accepted; what can be wrong is the
    SMTP fallback."""

    name = "email"

    @staticmethod
    def route(rule, settings) -> str | None:
        return "email" if settings.alert_email_to else None

    @staticmethod
    def probe(settings) -> str | None:
        """The SMTP fallback must be reachable: it is what still works when Postal does not."""
        if not settings.alert_email_to or not settings.smtp_host:
            return None
        host, port = _smtp_address(settings.smtp_host)
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS).close()
        except OSError as exc:
            return f"SMTP_HOST {settings.smtp_host} is unreachable: {exc.strerror or exc}"
        return None

    def send(self, row, settings) -> Outcome:
        document = _document(row)
        subject = _subject(row, document)
        text = (f"{document['summary']}\n\nrule: {row.rule}\naction: {row.action}\n"
                f"details: {json.dumps(document['payload'].get('custom_details') or {}, indent=2, default=str)}\n")
        if self._postal_usable(settings) or not settings.smtp_host:
            return self._through_gateway(settings, subject, text)
        return self._through_smtp(settings, subject, text)

    @staticmethod
    def _postal_usable(settings) -> bool:
        """Postal is configured and its check (as /health sees it) is not unhealthy."""
        from flask import current_app

        if current_app.extensions.get("controlplane.postal") is None:
            return False
        health = current_app.extensions["controlplane.health"]
        view = health.cache.get().current(health.specs)
        return not any(spec.kind == "postal" and view[spec.name].status == "unhealthy" for spec in health.specs)

    @staticmethod
    def _through_gateway(settings, subject: str, text: str) -> Outcome:
        from ..extensions import db
        from ..gateway.keys import system_key
        from ..gateway.sending import add_message, validate_message

        key = system_key(settings, SYSTEM_KEY_NAME, "system:alerting")
        params = {"to": list(settings.alert_email_to), "from": settings.alert_email_from, "subject": subject,
                  "plain_body": text, "tag": "alert"}
        try:
            # In a savepoint of the outbox's batch: a refusal undoes this mail only, never the
            # pages already sent in the same batch (undone, they would be paged again).
            with db.session.begin_nested():
                add_message(key, "message", validate_message(params, key, settings.max_attachment_bytes), None, None)
        except Exception as exc:  # a refusal of our own making (a bad address): do not retry forever
            return Outcome(False, permanent=True, error=f"the gateway refused the alert email: {exc}")
        return Outcome(True)

    @staticmethod
    def _through_smtp(settings, subject: str, text: str) -> Outcome:
        host, port = _smtp_address(settings.smtp_host)
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, settings.alert_email_from, ", ".join(
            settings.alert_email_to)
        message.set_content(text)
        try:
            with smtplib.SMTP(host, port, timeout=10) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome(False, error=f"SMTP {settings.smtp_host}: {exc}")
        return Outcome(True)


def _smtp_address(smtp_host: str) -> tuple[str, int]:
    host, _, port = smtp_host.partition(":")
    return host, int(port or 25)


CHANNELS = {channel.name: channel for channel in (PagerDutyChannel(), WebhookChannel(), EmailChannel())}


def channel_problems(settings, rules) -> dict[str, str]:
    """Channel name -> why it (or some rules' pages on it) cannot work, from configuration alone."""
    return {name: problem for name, channel in CHANNELS.items()
            if (problem := channel.problem(settings) or channel.rule_problem(settings, rules))}


def probed_channel_problems(settings, rules) -> dict[str, str]:
    """channel_problems, plus what only the network tells (an unreachable SMTP host, a webhook
    host the SSRF guard refuses)."""
    problems = channel_problems(settings, rules)
    for name, channel in CHANNELS.items():
        if name not in problems and (problem := channel.probe(settings)):
            problems[name] = problem
    return problems


def describe_problems(problems: dict[str, str]) -> str:
    """One line: `channel pagerduty: ...; channel email: ...`."""
    return "; ".join(f"channel {name}: {problem}" for name, problem in problems.items())


def init_channels(app) -> None:
    """One PagerDuty sender for the app (tests replace `controlplane.pagerduty`), and the channel
    problems known from configuration, said once, loudly, at start-up."""
    settings = app.extensions["controlplane.settings"]
    app.extensions["controlplane.pagerduty"] = PagerDutySender(settings.pagerduty_events_url)
    problems = channel_problems(settings, app.extensions["controlplane.alert_rules"])
    app.extensions["controlplane.channel_problems"] = problems
    for name, problem in problems.items():
        log.error("alert channel %s cannot work: %s", name, problem, extra={"channel": name})
