"""Notifier channels besides PagerDuty. Contract: `send(row, settings) -> Outcome` (ok, permanent,
error), one attempt; the outbox retries. Registry: CHANNELS (pagerduty is added by notifications).

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
from email.message import EmailMessage

from ..timeutil import isoformat
from .pagerduty import Outcome

log = logging.getLogger("controlplane.alerting")
SYSTEM_KEY_NAME = "alerting (system)"


def _subject(row, body: dict) -> str:
    what = {"trigger": "FIRING", "resolve": "RESOLVED", "change": "CHANGE"}.get(row.action, row.action.upper())
    return f"[{what}] {row.rule}: {body.get('summary') or ''}".strip()[:200]


def _document(row) -> dict:
    payload = json.loads(row.payload or "{}")
    return {"type": f"alert.{row.action}", "rule": row.rule, "dedup_key": row.dedup_key,
            "summary": payload.get("summary") or f"{row.rule} {row.action}", "payload": payload,
            "created_at": isoformat(row.created_at)}


class WebhookChannel:
    name = "webhook"

    @staticmethod
    def configured(settings) -> bool:
        return bool(settings.alert_webhook_url)

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
        return Outcome(False, permanent=permanent, error=attempt.error)


class EmailChannel:
    name = "email"

    @staticmethod
    def configured(settings) -> bool:
        return bool(settings.alert_email_to)

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
        from ..gateway.sending import accept, validate_message

        key = system_key(settings, SYSTEM_KEY_NAME, "system:alerting")
        params = {"to": list(settings.alert_email_to), "from": settings.alert_email_from, "subject": subject,
                  "plain_body": text, "tag": "alert"}
        try:
            accept(key, "message", validate_message(params, key, settings.max_attachment_bytes), None, None)
        except Exception as exc:  # a refusal of our own making (a bad address): do not retry forever
            db.session.rollback()
            return Outcome(False, permanent=True, error=f"the gateway refused the alert email: {exc}")
        return Outcome(True)

    @staticmethod
    def _through_smtp(settings, subject: str, text: str) -> Outcome:
        host, _, port = settings.smtp_host.partition(":")
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, settings.alert_email_from, ", ".join(
            settings.alert_email_to)
        message.set_content(text)
        try:
            with smtplib.SMTP(host, int(port or 25), timeout=10) as smtp:
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome(False, error=f"SMTP {settings.smtp_host}: {exc}")
        return Outcome(True)


CHANNELS = {channel.name: channel for channel in (WebhookChannel(), EmailChannel())}
