"""Sentry error reporting with secrets and mail content scrubbed before anything leaves."""
from __future__ import annotations

import re

import sentry_sdk
from sentry_sdk.integrations.flask import FlaskIntegration

from ..version import VERSION

FILTERED = "[Filtered]"
# Keys whose values never leave the process, wherever they appear in an event.
SENSITIVE_KEY = re.compile(
    r"(authorization|x-server-api-key|api[_-]?key|token|jwt|secret|password|passwd|salt|cookie|"
    r"plain_body|html_body|body|data|attachments|raw_message|message_body|dsn)",
    re.IGNORECASE,
)
# Values that look like credentials even under an innocent key.
SENSITIVE_VALUE = re.compile(
    r"(Bearer\s+[A-Za-z0-9._~+/=-]+|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|mg_[A-Za-z0-9_]{16,})"
)


def scrub(value, key: str | None = None):
    """Recursively replace sensitive values; returns a scrubbed copy."""
    if key is not None and SENSITIVE_KEY.search(key):
        return FILTERED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return SENSITIVE_VALUE.sub(FILTERED, value)
    return value


def _before_send(event, hint):
    request = event.get("request")
    if request:
        for part in ("headers", "data", "cookies", "query_string", "env"):
            if part in request:
                request[part] = FILTERED if part in ("data", "cookies") else scrub(request[part])
    for exception in (event.get("exception") or {}).get("values", []):
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            if "vars" in frame:
                frame["vars"] = scrub(frame["vars"])
        if "value" in exception:
            exception["value"] = scrub(exception["value"])
    if "logentry" in event:
        event["logentry"] = scrub(event["logentry"])
    for crumb in (event.get("breadcrumbs") or {}).get("values", []):
        if "message" in crumb:
            crumb["message"] = scrub(crumb["message"])
        if "data" in crumb:
            crumb["data"] = scrub(crumb["data"])
    if "extra" in event:
        event["extra"] = scrub(event["extra"])
    return event


def init_sentry(settings, transport=None) -> bool:
    """Start Sentry when SENTRY_DSN is set; returns whether it is on."""
    if not settings.sentry_dsn:
        return False
    options = dict(
        dsn=settings.sentry_dsn,
        environment=settings.env,
        release=VERSION,
        # traces_sample_rate stays unset: OpenTelemetry owns tracing.
        integrations=[FlaskIntegration()],
        before_send=_before_send,
        max_request_body_size="never",
    )
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    return True
