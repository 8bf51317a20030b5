"""/api/v1/webhooks: subscriber webhooks of the calling key (CONTRACTS.md §2)."""
from __future__ import annotations

import json
import secrets

from flask import Blueprint, current_app, g
from sqlalchemy import select

from ..extensions import db
from ..gateway.auth import requires
from ..gateway.envelope import GatewayError, failure, start_timer, success
from ..gateway.params import request_params
from ..outbound import http_client
from ..timeutil import isoformat, utcnow
from .models import EVENT_TYPES, Webhook
from .sender import deliver
from .ssrf import UnsafeTarget, check_url

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")
bp.before_request(start_timer)
bp.register_error_handler(GatewayError, failure)


def describe(hook: Webhook) -> dict:
    return {"id": hook.id, "url": hook.url, "name": hook.name, "events": hook.events.split(","),
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
    params = request_params()
    url = _checked_url(params.get("url"))
    events = params.get("events") or ["*"]
    if not isinstance(events, list) or not all(e == "*" or e in EVENT_TYPES for e in events):
        raise GatewayError("InvalidEvents", f"events must be a list drawn from {', '.join(EVENT_TYPES)} (or '*')", 422)
    name = params.get("name") or url
    if not isinstance(name, str) or len(name) > 120:
        raise GatewayError("InvalidName", "name must be a string of at most 120 characters", 422)
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
    return success({"id": hook.id, "deleted": True})


@bp.post("/test")
@requires("send", "read")
def test_webhook():
    """Send a signed `webhook.test` event now, to {id} (one of ours) or to {url, secret?}."""
    params = request_params()
    if params.get("id") is not None:
        hook = _own(int(params["id"]))
        url, secret = hook.url, hook.secret
    else:
        url, secret = _checked_url(params.get("url")), params.get("secret") or ""
    settings = current_app.extensions["controlplane.settings"]
    now = int(utcnow().timestamp())
    body = json.dumps({"id": "test", "type": "webhook.test", "timestamp": now,
                       "data": {"message": "MailGoat webhook test"}}, separators=(",", ":")).encode()
    with http_client(current_app, settings.webhook_timeout_seconds) as http:
        attempt = deliver(http, url, secret, body, now, settings.webhook_allow_private_targets)
    return success({"success": attempt.ok, "status_code": attempt.status, "error": attempt.error,
                    "response_time_ms": round(attempt.seconds * 1000, 1)})
