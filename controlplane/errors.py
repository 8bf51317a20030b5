"""Every error is JSON: the Postal envelope MailGoat clients read, plus top-level `error` and `message`.

No HTML error page and no traceback ever reaches a client; unexpected exceptions are logged (and
sent to Sentry by its Flask integration) and answered with a request id to quote.

Two refusals happen before any route runs or the database is asked: a URL whose path or query
string holds a NUL byte or bytes that are not UTF-8 (which includes encoded lone surrogates) is a
400 `InvalidCharacters`. And an unreachable database is a 503 `DatabaseUnavailable` with
`Retry-After`, on every route, never a 500.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import unquote_to_bytes

from flask import Flask, jsonify, request
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from .telemetry.logging import request_id_var

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


def error_code_for(exc: HTTPException) -> str:
    """werkzeug's exception name as a Postal-style code: NotFound, MethodNotAllowed, ..."""
    return re.sub(r"[^A-Za-z]", "", type(exc).__name__) or "HTTPError"


def error_response(status: int, code: str, message: str, headers=None):
    body = {
        "status": "error",
        "time": 0.0,
        "flags": {},
        "data": {"message": message, "code": code},
        "error": code,
        "message": message,
    }
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def is_clean_url_text(raw: bytes) -> bool:
    """True when `raw` is UTF-8 (so no lone surrogates) without a NUL byte."""
    try:
        return "\x00" not in raw.decode("utf-8")
    except UnicodeDecodeError:
        return False


def url_is_clean() -> bool:
    # WSGI hands the decoded path over as latin-1 text (its code points are the raw bytes), but some
    # servers have already replaced undecodable bytes there: the raw request target tells the truth.
    environ = request.environ
    path = environ.get("PATH_INFO", "").encode("latin-1", "replace")
    target = unquote_to_bytes((environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").split("?", 1)[0])
    query = unquote_to_bytes(request.query_string.replace(b"+", b" "))
    return all(is_clean_url_text(part) for part in (path, target, query))


def is_database_outage(exc: Exception) -> bool:
    """The database could not be reached or dropped the connection (not a bad statement of ours)."""
    if isinstance(exc, (OperationalError, DisconnectionError, PoolTimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def register_error_handlers(app: Flask, max_request_bytes: int) -> None:
    @app.before_request
    def refuse_oversized_bodies():
        # Checked up front so a route that never reads its body still answers 413.
        if request.content_length is not None and request.content_length > max_request_bytes:
            raise RequestEntityTooLarge(f"The request body is larger than {max_request_bytes} bytes.")

    @app.before_request
    def refuse_unstorable_urls():
        if not url_is_clean():
            return error_response(400, "InvalidCharacters",
                                  "The URL's path or query string holds a NUL byte or bytes that are not UTF-8.")
        return None

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(DisconnectionError)
    @app.errorhandler(PoolTimeoutError)
    def database_unavailable(exc: Exception):
        if not is_database_outage(exc):
            raise exc  # a bug of ours: Flask logs it (Sentry too) and answers the JSON 500
        # The exception's first line names the failure and the host, never the password.
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return error_response(503, "DatabaseUnavailable", "The database is unavailable; retry shortly.",
                              {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if isinstance(exc, InternalServerError):
            return internal_error(exc)
        headers = {}
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            headers["Allow"] = ", ".join(exc.valid_methods)
        message = exc.description or exc.name
        return error_response(exc.code or 500, error_code_for(exc), message, headers)

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        # Flask has already logged the exception with its traceback (and Sentry captured it).
        return error_response(500, "InternalServerError",
                              "Something went wrong on our side; quote the request id when reporting it.")
