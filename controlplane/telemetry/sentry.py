"""Sentry error reporting: no mail and no credentials ever leave the process.

What on-call gets: the exception types and messages, our stack frames (file, function, line and
source), the request id and the route (as tags), the breadcrumbs. What never leaves:

- frame locals (`include_local_variables=False`): SQLAlchemy's `parameters`, `effective_parameters`
  and `dict_`, and our own `params`, hold whole messages; `vars` are dropped even if turned back on;
- request bodies and cookies (`max_request_body_size="never"`, and filtered in `before_send`), and
  a secret in the path (the `<token>` of a subscription link) from the request URL;
- in every string of the event (exception values, log messages, breadcrumbs, extra, contexts,
  tags, reprs): SQLAlchemy's `[parameters: ...]`, passwords in URLs, email addresses, bearer
  tokens, JWTs, our API keys, and the values of mail and secret fields (`'plain_body': '...'`,
  `html_body="..."`, `api_key=...`);
- under a sensitive key anywhere (headers such as Authorization and X-Server-API-Key, `password`,
  `token`, `plain_body`, `attachments`, `data`, ...): the whole value.
"""
from __future__ import annotations

import re

import sentry_sdk
from flask import has_request_context, request
from sentry_sdk.integrations.flask import FlaskIntegration

from ..version import VERSION
from .logging import request_id_var

FILTERED = "[Filtered]"
_KEYS = (r"authorization|x-server-api-key|api[_-]?key|token|jwt|secret|password|passwd|salt|cookie|"
         r"plain_body|html_body|body|data|attachments|raw_message|message_body|subject|dsn")
# Keys whose values never leave the process, wherever they appear in an event.
SENSITIVE_KEY = re.compile(f"({_KEYS})", re.IGNORECASE)
# A field name holding one of those words. Every pattern below starts only where a run of its
# characters starts (the lookbehinds) and never gives characters back (possessive quantifiers), so
# a long string costs linear time: a report must never hold up the request or job it is about.
_KEY_NAME = rf"(?<![\w-])(?=[\w-]*?(?:{_KEYS}))[\w-]++"
_QUOTED = r"""(?P<quote>['"])(?:\\.|(?!(?P=quote))[^\\])*+(?P=quote)"""
_EMAIL_CHARS = r"[\w.!#$%&*+^{|}~-]"

# Free-text scrubbers, in order: each (pattern, replacement) runs over every string of the event.
TEXT_SCRUBBERS = [
    # SQLAlchemy's error text ends with the statement's parameters (the whole message on a send),
    # then an optional link; everything up to that link goes.
    (re.compile(r"\[parameters: (?:(?!\n\(Background on this error).)*+", re.DOTALL), f"[parameters: {FILTERED}]"),
    # postgresql://user:password@host, redis://:password@host, https://user:password@host
    (re.compile(r"(?<![a-z0-9+.-])(?P<head>[a-z][a-z0-9+.-]*+://[^\s:/@]*+):[^\s@/]++@", re.IGNORECASE),
     rf"\g<head>:{FILTERED}@"),
    # Reprs and JSON ('plain_body': '...', "api_key": "..."), keyword reprs (html_body="...").
    (re.compile(rf"""(?P<key>(?P<kq>['"]){_KEY_NAME}(?P=kq)\s*+:\s*+){_QUOTED}""", re.IGNORECASE | re.DOTALL),
     rf"\g<key>\g<quote>{FILTERED}\g<quote>"),
    (re.compile(rf"(?P<key>{_KEY_NAME}=){_QUOTED}", re.IGNORECASE | re.DOTALL), rf"\g<key>\g<quote>{FILTERED}\g<quote>"),
    # Query strings and libpq conninfo (api_key=..., password=...).
    (re.compile(rf"""(?P<key>{_KEY_NAME}=)[^\s&'",;)]++""", re.IGNORECASE), rf"\g<key>{FILTERED}"),
    # Credentials that look like credentials whatever their key.
    (re.compile(r"Bearer\s++[A-Za-z0-9._~+/=-]++|eyJ[A-Za-z0-9_-]++\.[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+"
                r"|mg_[A-Za-z0-9_]{16,}+"), FILTERED),
    # Email addresses: recipients, senders, users (whole, so a local part is no clue either).
    (re.compile(rf"(?<!{_EMAIL_CHARS}){_EMAIL_CHARS}++@[\w-]++(?:\.[\w-]++)*+"), FILTERED),
]


def scrub_text(text: str) -> str:
    for pattern, replacement in TEXT_SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


def scrub(value, key: str | None = None):
    """Recursively replace sensitive values; returns a scrubbed copy."""
    if key is not None and SENSITIVE_KEY.search(key):
        return FILTERED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def _scrub_breadcrumb(crumb: dict) -> dict:
    # A breadcrumb's `data` is Sentry's own (an HTTP call's URL and status, a log record's fields):
    # scrubbed like the rest rather than dropped, as it tells on-call what led to the error.
    return {key: scrub(value) if key == "data" else scrub(value, key) for key, value in crumb.items()}


def _drop_frame_locals(event) -> None:
    """Frame locals are off at init; this keeps them out should an integration add them back."""
    for section in ("exception", "threads"):
        for item in (event.get(section) or {}).get("values", []):
            for frame in (item.get("stacktrace") or {}).get("frames", []):
                frame.pop("vars", None)


def _tag_request(event) -> None:
    """The request id a client quotes (X-Request-Id) and the route template, to search by."""
    tags = event.setdefault("tags", {})
    request_id = request_id_var.get()
    if request_id:
        tags["request_id"] = request_id
    if has_request_context() and request.url_rule is not None:
        tags["route"] = request.url_rule.rule
        _filter_path_secrets(event.get("request") or {}, request.view_args or {})


def _filter_path_secrets(sent_request: dict, view_args: dict) -> None:
    """A secret in the path (/status/subscriptions/<token>/confirm) leaves the URL; the route
    tag still says which route it was."""
    url = sent_request.get("url")
    if not url:
        return
    for name, value in view_args.items():
        if value and SENSITIVE_KEY.search(name):
            url = url.replace(str(value), FILTERED)
    sent_request["url"] = url


def _before_send(event, hint):
    _drop_frame_locals(event)
    _tag_request(event)
    breadcrumbs = (event.pop("breadcrumbs", None) or {}).get("values", [])
    event = scrub(event)
    if breadcrumbs:
        event["breadcrumbs"] = {"values": [_scrub_breadcrumb(crumb) for crumb in breadcrumbs]}
    return event


def init_sentry(settings, transport=None) -> bool:
    """Start Sentry when SENTRY_DSN is set; returns whether it is on. Every process (web, worker,
    commands) calls this through create_app, so all report the same way."""
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
        include_local_variables=False,
    )
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    return True
