"""Postal: reachable and authenticated, proven without sending mail.

We ask Postal for message id 0 with our server key. A real Postal answers `MessageNotFound`
when the key is good and `InvalidServerAPIKey` when it is not, and no mail is ever sent.
"""
from time import perf_counter

import httpx

from . import CheckFailed, CheckKind, Metric, Observation

PROBE_PATH = "/api/v1/messages/message"


class PostalCheck(CheckKind):
    name = "postal"
    metrics = {"latency_ms": Metric("ms")}
    primary_metric = "latency_ms"

    def validate_target(self, target) -> None:
        if target is not None and not str(target).startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (or omitted to use POSTAL_API_URL)")

    def run(self, spec, ctx) -> Observation:
        base_url = spec.target or ctx.settings.postal_api_url
        if not base_url:
            message = "POSTAL_API_URL is not set"
            if ctx.settings.postal_transport == "sink":
                message += f"; mail is written to {ctx.settings.sink_dir}, not sent"
            return Observation(status="unconfigured", message=message)
        api_key = ctx.settings.postal_api_key
        headers = {"X-Server-API-Key": api_key} if api_key else {}
        started = perf_counter()
        try:
            response = ctx.http.post(
                base_url.rstrip("/") + PROBE_PATH, json={"id": 0}, headers=headers, timeout=spec.timeout
            )
        except httpx.HTTPError as exc:
            raise CheckFailed(f"cannot reach Postal at {base_url}: {type(exc).__name__}: {exc}") from exc
        latency = {"latency_ms": round((perf_counter() - started) * 1000, 2)}
        if response.status_code >= 500:
            raise CheckFailed(f"Postal answered HTTP {response.status_code}")
        try:
            envelope = response.json()
            code = (envelope.get("data") or {}).get("code")
        except (ValueError, AttributeError):
            raise CheckFailed(f"Postal answered HTTP {response.status_code} without its JSON envelope") from None
        if code == "MessageNotFound" or envelope.get("status") == "success":
            return Observation(values=latency, message=f"reachable and authenticated in {latency['latency_ms']} ms")
        if code in ("InvalidServerAPIKey", "AccessDenied"):
            if not api_key:
                return Observation(values=latency, at_most="degraded",
                                   message="reachable; POSTAL_API_KEY is not set, so authentication is unproven")
            raise CheckFailed(f"Postal rejected POSTAL_API_KEY ({code})")
        raise CheckFailed(f"unexpected answer from Postal: HTTP {response.status_code}, code {code!r}")
