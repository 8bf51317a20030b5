"""Delivery metrics under the names MailGoat's own dashboards use (CONTRACTS.md §2).

EMAILS_SENT, SEND_DURATION and RETRIES are counted where mail is sent, in the worker process, and
scraped from its own target (WORKER_METRICS_PORT, telemetry/worker_metrics.py); API_ERRORS is
counted by the web. The outbox gauges below are read from the database by the web's /metrics.
"""
from prometheus_client import Counter, Histogram

EMAILS_SENT = Counter("mailgoat_emails_sent_total", "Messages handed to Postal, by outcome.", ["status"])
SEND_DURATION = Histogram(
    "mailgoat_send_duration_seconds", "Time of one send call to Postal.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0),
)
RETRIES = Counter("mailgoat_retries_total", "Sends to Postal that will be retried.")
API_ERRORS = Counter("mailgoat_api_errors_total", "Errors answered by the MailGoat API, by code.", ["type"])


def outbox_families():
    """Outbox depth by state and the age of the oldest due message, read at scrape time."""
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import func, select

    from ..events.models import WebhookDelivery
    from ..extensions import db
    from ..gateway.models import Message
    from ..timeutil import as_utc, utcnow

    active = ("queued", "scheduled", "sending", "retrying")
    depth = GaugeMetricFamily("mailgoat_outbox_messages", "Messages not yet handed to Postal, by state.",
                              labels=["state"])
    counts = dict(db.session.execute(
        select(Message.state, func.count()).where(Message.state.in_(active)).group_by(Message.state)
    ).all())
    for state in active:
        depth.add_metric([state], counts.get(state, 0))
    yield depth
    now = utcnow()
    oldest = db.session.execute(
        select(func.min(Message.next_attempt_at)).where(Message.state.in_(("queued", "retrying")),
                                                        Message.next_attempt_at <= now)
    ).scalar_one()
    age = GaugeMetricFamily("mailgoat_outbox_oldest_due_age_seconds",
                            "How long the oldest due message has waited (0 when none).")
    age.add_metric([], (now - as_utc(oldest)).total_seconds() if oldest else 0.0)
    yield age
    hooks = GaugeMetricFamily("mailgoat_webhook_outbox", "Subscriber webhook deliveries by state.", labels=["state"])
    hook_counts = dict(db.session.execute(
        select(WebhookDelivery.state, func.count()).where(WebhookDelivery.state.in_(("pending", "sending", "dead")))
        .group_by(WebhookDelivery.state)
    ).all())
    for state in ("pending", "sending", "dead"):
        hooks.add_metric([state], hook_counts.get(state, 0))
    yield hooks
