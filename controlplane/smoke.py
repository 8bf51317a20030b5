"""The post-deploy smoke test from the plan's checklist. Stops at the first failing step."""
from __future__ import annotations

from typing import Callable

import httpx

from .version import VERSION


class StepFailed(Exception):
    pass


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        raise StepFailed(f"HTTP {response.status_code}, body is not JSON") from None
    if not isinstance(body, dict):
        raise StepFailed("body is not a JSON object")
    return body


def _live(client):
    response = client.get("/live")
    if response.status_code != 200:
        raise StepFailed(f"HTTP {response.status_code}")
    return "alive"


def _health(client):
    response = client.get("/health")
    body = _json(response)
    status = body.get("status")
    if response.status_code != 200 or status not in ("healthy", "degraded"):
        failing = [name for name, value in (body.get("checks") or {}).items() if value == "unhealthy"]
        raise StepFailed(f"HTTP {response.status_code}, status {status!r}, unhealthy: {', '.join(failing) or 'none'}")
    return f"{status}, version {body.get('version')}"


def _ready(client):
    response = client.get("/ready")
    body = _json(response)
    if response.status_code != 200:
        raise StepFailed(f"HTTP {response.status_code}: {body.get('reason') or body.get('status')}")
    return "ready"


def _metrics(client):
    response = client.get("/metrics")
    if response.status_code != 200 or "http_server_request_duration_seconds" not in response.text:
        raise StepFailed(f"HTTP {response.status_code}, request metrics missing")
    return f"{len(response.text.splitlines())} lines"


def _api_round_trip(api_key: str):
    def step(client):
        # Asks for a message that cannot exist: proves routing, auth and the envelope without sending mail.
        response = client.post("/api/v1/messages/message", json={"id": 0},
                               headers={"X-Server-API-Key": api_key})
        body = _json(response)
        code = (body.get("data") or {}).get("code")
        if code != "MessageNotFound":
            raise StepFailed(f"HTTP {response.status_code}, code {code!r} (expected MessageNotFound)")
        return "authenticated"

    return step


def run_smoke(base_url: str, api_key: str | None, timeout: float, echo: Callable[[str], None] = print) -> bool:
    steps = [("live", _live), ("health", _health), ("ready", _ready), ("metrics", _metrics)]
    if api_key:
        steps.append(("api round trip", _api_round_trip(api_key)))
    headers = {"User-Agent": f"controlplane-smoke/{VERSION}"}
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=headers) as client:
        for name, step in steps:
            try:
                detail = step(client)
            except StepFailed as exc:
                echo(f"FAIL {name}: {exc}")
                return False
            except httpx.HTTPError as exc:
                echo(f"FAIL {name}: {type(exc).__name__}: {exc}")
                return False
            echo(f"ok   {name}: {detail}")
    echo("smoke test passed")
    return True
