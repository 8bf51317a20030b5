"""Postal's response envelope, with the HTTP status codes MailGoat's Node CLI expects.

Real Postal always answers 200; the gateway keeps Postal's body (`status`, `time`, `flags`,
`data.code`, `data.message`) and adds a meaningful status code plus top-level `error` and
`message`, so both kinds of client read it (CONTRACTS.md §2).
"""
from __future__ import annotations

from time import perf_counter

from flask import g, jsonify

from ..delivery.metrics import API_ERRORS

# Postal's error codes (and ours) to HTTP status codes.
HTTP_STATUS = {
    "AccessDenied": 401,
    "InvalidServerAPIKey": 401,
    "InsufficientScope": 403,
    "IpNotAllowed": 403,
    "KeySuspended": 403,
    "MessageNotFound": 404,
    "CredentialNotFound": 404,
    "RateLimited": 429,
    "UpstreamUnavailable": 503,
}
VALIDATION_STATUS = 422


class GatewayError(Exception):
    """An error answered in Postal's envelope. `extra` keys come before message and code, as in Postal."""

    def __init__(self, code: str, message: str, status: int | None = None, extra: dict | None = None,
                 envelope_status: str = "error", headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or HTTP_STATUS.get(code, VALIDATION_STATUS)
        self.extra = extra or {}
        self.envelope_status = envelope_status
        self.headers = headers or {}


def start_timer() -> None:
    g.gateway_started = perf_counter()


def _elapsed() -> float:
    return round(perf_counter() - g.get("gateway_started", perf_counter()), 3)


def success(data, status: int = 200, **top_level):
    body = {"status": "success", "time": _elapsed(), "flags": {}, "data": data, **top_level}
    response = jsonify(body)
    response.status_code = status
    return response


def failure(exc: GatewayError):
    API_ERRORS.labels(type=exc.code).inc()
    data = {**exc.extra, "message": exc.message, "code": exc.code}
    body = {"status": exc.envelope_status, "time": _elapsed(), "flags": {}, "data": data,
            "error": exc.code, "message": exc.message}
    response = jsonify(body)
    response.status_code = exc.status
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response
