"""/api/v1/webhooks: subscriber webhooks of the calling key (CONTRACTS.md §2)."""
from __future__ import annotations

import json
import secrets

from flask import Blueprint, current_app, g
from sqlalchemy import select

from ..extensions import db
from ..gateway.auth import requires
from ..gateway.envelope import GatewayError, failure, start_timer, success
from ..gateway.params import parse_int, request_params
from ..gateway.schemas import WEBHOOK_NAME_MAX_LENGTH, NewWebhook, WebhookTest, declared_params
from ..outbound import http_client
from ..timeutil import isoformat, utcnow
from .models import Webhook
from .sender import deliver
from .ssrf import UnsafeTarget, check_url

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")
bp.before_request(start_timer)
bp.register_error_handler(GatewayError, failure)


def describe(hook: Webhook) -> dict:
    # Ids are JSON strings: the Node CLI keeps them as strings and compares them with ===.
    return {"id": str(hook.id), "url": hook.url, "name": hook.name, "events": hook.events.split(","),
            "enabled": hook.enabled, "disabled_reason": hook.disabled_reason,
            "created_at": isoformat(hook.created_at), "last_used_at": isoformat(hook.last_used_at)}


def _own(hook_id: int) -> Webhook:
    hook = db.session.get(Webhook, hook_id)
    if hook is None or hook.deleted_at is not None or hook.api_key_id != g.api_key.id:
        raise GatewayError("WebhookNotFound", f"No webhook with id {hook_id}", 404)
    return hook


def _checked_url(url) -> str:
    try:
        check_url(url, current_app.extensions["controlplane.settings"].webhook_allow_private_targets)
    except UnsafeTarget as exc:
        raise GatewayError("InvalidWebhookUrl", str(exc), 422) from None
    return url


@bp.post("")
@requires("send", "read")
def create_webhook():
    declared: NewWebhook = declared_params(request_params())
    url = _checked_url(declared.url)
    events = declared.events or ["*"]
    name = declared.name or url[:WEBHOOK_NAME_MAX_LENGTH]
    hook = Webhook(api_key_id=g.api_key.id, name=name, url=url, secret=secrets.token_hex(32),
                   events="*" if "*" in events else ",".join(events), enabled=True, failure_streak=0,
                   created_at=utcnow())
    db.session.add(hook)
    db.session.commit()
    # The signing secret is shown here only.
    return success({**describe(hook), "secret": hook.secret}, status=201)


@bp.get("")
@requires("send", "read")
def list_webhooks():
    hooks = db.session.execute(
        select(Webhook).where(Webhook.api_key_id == g.api_key.id, Webhook.deleted_at.is_(None)).order_by(Webhook.id)
    ).scalars()
    return success([describe(h) for h in hooks])


@bp.delete("/<int:hook_id>")
@requires("send", "read")
def delete_webhook(hook_id: int):
    hook = _own(hook_id)
    hook.deleted_at, hook.enabled = utcnow(), False
    db.session.commit()
    return success({"id": str(hook.id), "deleted": True})


@bp.post("/test")
@requires("send", "read")
def test_webhook():
    """Send a signed `webhook.test` event now. `{}` (what the Node CLI sends) tests every webhook
    the calling key registered; `{"id": ...}` one of them; `{"url", "secret"?}` any URL."""
    targets = _test_targets(declared_params(request_params()))
    settings = current_app.extensions["controlplane.settings"]
    now = int(utcnow().timestamp())
    body = json.dumps({"id": "test", "type": "webhook.test", "timestamp": now,
                       "data": {"message": "MailGoat webhook test"}}, separators=(",", ":")).encode()
    results = []
    with http_client(current_app, settings.webhook_timeout_seconds) as http:
        for hook_id, url, secret in targets:
            attempt = deliver(http, url, secret, body, now, settings.webhook_allow_private_targets)
            results.append({"id": hook_id, "url": url, "success": attempt.ok, "status_code": attempt.status,
                            "error": attempt.error, "response_time_ms": round(attempt.seconds * 1000, 1)})
    summary = {"success": all(r["success"] for r in results), "tested": len(results), "results": results}
    # One target: its outcome at the top as well, the shape this answer had before it took a list.
    return success({**summary, **results[0]} if len(results) == 1 else summary)


def _test_targets(declared: WebhookTest) -> list[tuple[str | None, str, str]]:
    """(webhook id, url, secret) of each webhook the test goes to."""
    if declared.id is not None:
        hook = _own(_webhook_id(declared.id))
        return [(str(hook.id), hook.url, hook.secret)]
    if declared.url is not None:
        return [(None, _checked_url(declared.url), declared.secret or "")]
    hooks = db.session.execute(
        select(Webhook).where(Webhook.api_key_id == g.api_key.id, Webhook.deleted_at.is_(None)).order_by(Webhook.id)
    ).scalars().all()
    if not hooks:
        raise GatewayError("WebhookNotFound", "This key has no registered webhooks: register one with "
                           "POST /api/v1/webhooks, or pass a url to test.", 404)
    return [(str(hook.id), hook.url, hook.secret) for hook in hooks]


def _webhook_id(value: str | int) -> int:
    """A webhook id as the clients send it (declared a string or a JSON integer): digits, or no webhook."""
    number = parse_int(value)
    if number is None or number < 1:
        raise GatewayError("WebhookNotFound", f"No webhook with id {str(value)[:64]!r}", 404)
    return number
