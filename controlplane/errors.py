"""Every error is JSON: the Postal envelope MailGoat clients read, plus top-level `error` and `message`.

No HTML error page and no traceback ever reaches a client; unexpected exceptions are logged (and
sent to Sentry by its Flask integration) and answered with a request id to quote.
"""
from __future__ import annotations

import re

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from .telemetry.logging import request_id_var


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


def register_error_handlers(app: Flask, max_request_bytes: int) -> None:
    @app.before_request
    def refuse_oversized_bodies():
        # Checked up front so a route that never reads its body still answers 413.
        if request.content_length is not None and request.content_length > max_request_bytes:
            raise RequestEntityTooLarge(f"The request body is larger than {max_request_bytes} bytes.")

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
