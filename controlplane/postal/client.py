"""Calls to Postal's HTTP API, classified into what the delivery worker needs to decide.

`PostalRejected`: Postal answered with an error code (the request itself is wrong, or the key
is): retrying repeats the refusal, so the message fails at once with that code.
`PostalUnavailable`: 5xx, 429, a timeout, a refused connection or an answer that is not Postal's
envelope: try again later.
"""
from __future__ import annotations

import base64
import json
import secrets
import string
import threading
import uuid
from pathlib import Path

import httpx

from ..outbound import http_client


class PostalRejected(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PostalUnavailable(Exception):
    """Transient: the message should be retried."""


class PostalClient:
    """Contract: `call(path, params) -> data`, raising PostalRejected or PostalUnavailable."""

    name = "http"

    def __init__(self, base_url: str, api_key: str, http: httpx.Client):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.http = http

    def call(self, path: str, params: dict) -> dict:
        try:
            response = self.http.post(self.base_url + path, json=params, headers={"X-Server-API-Key": self.api_key})
        except httpx.HTTPError as exc:
            raise PostalUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise PostalUnavailable(f"Postal answered HTTP {response.status_code}")
        try:
            envelope = response.json()
            status, data = envelope["status"], envelope.get("data") or {}
        except (ValueError, KeyError, TypeError):
            raise PostalUnavailable(f"HTTP {response.status_code} without Postal's envelope") from None
        if status == "success":
            return data
        raise PostalRejected(str(data.get("code") or status), str(data.get("message") or ""))


class SinkPostal:
    """Development transport: writes each message to SINK_DIR as JSON and answers like Postal."""

    name = "sink"
    _ids = iter(range(1, 1 << 62))
    _lock = threading.Lock()

    def __init__(self, directory: Path):
        self.directory = directory

    def call(self, path: str, params: dict) -> dict:
        if path not in ("/api/v1/send/message", "/api/v1/send/raw"):
            raise PostalRejected("NotSupported", f"the sink transport only sends ({path})")
        recipients = (params.get("to", []) + params.get("cc", []) + params.get("bcc", [])
                      if path.endswith("/message") else params.get("rcpt_to", []))
        sender = params.get("from") or params.get("mail_from") or ""
        message_id = f"{uuid.uuid4()}@{sender.rsplit('@', 1)[-1].rstrip('>') or 'sink.local'}"
        with self._lock:
            messages = {address: {"id": next(self._ids), "token": _token()} for address in recipients}
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {"path": path, "message_id": message_id, "messages": messages, "params": params}
        if "data" in params:
            record["raw"] = base64.b64decode(params["data"]).decode("utf-8", "replace")
        (self.directory / f"{message_id.split('@')[0]}.json").write_text(json.dumps(record, indent=2))
        return {"message_id": message_id, "messages": messages}


def _token() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))


def postal_client(app):
    """The configured client, or None when Postal is not configured (delivery then waits)."""
    settings = app.extensions["controlplane.settings"]
    if settings.postal_transport == "sink":
        return SinkPostal(settings.sink_dir)
    if not settings.postal_api_url or not settings.postal_api_key:
        return None
    return PostalClient(settings.postal_api_url, settings.postal_api_key, http_client(app, settings.postal_timeout,
                                                                                  connections=settings.delivery_concurrency))
