"""Delivery metrics under the names MailGoat's own dashboards use (CONTRACTS.md §2)."""
from prometheus_client import Counter, Histogram

EMAILS_SENT = Counter("mailgoat_emails_sent_total", "Messages handed to Postal, by outcome.", ["status"])
SEND_DURATION = Histogram(
    "mailgoat_send_duration_seconds", "Time of one send call to Postal.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0),
)
RETRIES = Counter("mailgoat_retries_total", "Sends to Postal that will be retried.")
API_ERRORS = Counter("mailgoat_api_errors_total", "Errors answered by the MailGoat API, by code.", ["type"])
