"""The one chokepoint for webhooks we send: SSRF guard, signature, timeout, outcome."""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx

from .ssrf import UnsafeTarget, pin_url

SIGNATURE_HEADER = "X-MailGoat-Signature"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None
    error: str | None
    seconds: float
    permanent: bool = False  # retrying cannot help (an unsafe URL)


def deliver(http: httpx.Client, url: str, secret: str, body: bytes, timestamp: int, allow_private: bool) -> Attempt:
    started = time.perf_counter()
    try:
        # Again at send time (DNS may have changed since creation), and the connection goes to the
        # address vetted now: a second lookup by the HTTP client could be answered differently.
        target = pin_url(url, allow_private)
    except UnsafeTarget as exc:
        return Attempt(False, None, f"refused: {exc}", 0.0, permanent=True)
    signed = signature(secret, body)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signed,
        # MailGoat's receiver also reads this name, in the same form.
        "X-Postal-Signature": signed,
        # Also inside the signed body; receivers reject stale timestamps to stop replays.
        "X-MailGoat-Timestamp": str(timestamp),
        **target.headers,
    }
    try:
        response = http.post(target.url, content=body, headers=headers, extensions=target.extensions)
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    ok = 200 <= response.status_code < 300
    return Attempt(ok, response.status_code, None if ok else f"HTTP {response.status_code}",
                   time.perf_counter() - started)
