"""Request parameters the way Postal reads them, plus the encodings MailGoat clients send.

JSON when the content type says so; otherwise a form field `params` holding JSON (Postal);
otherwise plain form fields and multipart file parts (the Python SDK), with repeated fields
such as `to` gathered into lists.
"""
from __future__ import annotations

import base64
import json

from flask import request

from .envelope import GatewayError

LIST_FIELDS = ("to", "cc", "bcc", "rcpt_to", "scopes", "allowed_from_domains", "allowed_ips")


def request_params() -> dict:
    content_type = request.content_type or ""
    if content_type.startswith("application/json"):
        if not request.get_data():
            return {}
        try:
            params = json.loads(request.get_data())
        except ValueError:
            raise GatewayError("InvalidJSON", "The request body is not valid JSON.", 400) from None
    elif "params" in request.form:
        try:
            params = json.loads(request.form["params"])
        except ValueError:
            raise GatewayError("InvalidJSON", "The params field is not valid JSON.", 400) from None
    elif request.form or request.files:
        params = _form_params()
    else:
        params = {}
    if not isinstance(params, dict):
        raise GatewayError("InvalidJSON", "Parameters must be a JSON object.", 400)
    return params


def _form_params() -> dict:
    params: dict = {}
    for name in request.form:
        values = request.form.getlist(name)
        params[name] = values if name in LIST_FIELDS or len(values) > 1 else values[0]
    files = request.files.getlist("attachments") + request.files.getlist("attachments[]")
    if files:
        params["attachments"] = [
            {
                "name": f.filename,
                "content_type": f.mimetype or "application/octet-stream",
                "data": base64.b64encode(f.read()).decode(),
            }
            for f in files
        ]
    return params
