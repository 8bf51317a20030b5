"""POST /webhooks/postal: Postal's delivery events, verified, applied once, in order of arrival."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..postal.signatures import SignatureError, load_jwks, load_pem, parse_json_object, verify
from ..timeutil import utcnow
from ..events.emit import message_event, record_event
from .models import InboundMessage, Message, MessageRecipient, PostalEvent
from .params import parse_int

log = logging.getLogger(__name__)
bp = Blueprint("postal_webhooks", __name__)

# Postal event → the recipient's (and message's) new state.
STATE_FOR_EVENT = {
    "MessageSent": "delivered",
    "MessageDelayed": "delayed",
    "MessageDeliveryFailed": "failed",
    "MessageHeld": "held",
    "MessageBounced": "bounced",
}
# Postal events that change nothing but are worth telling subscribers about.
ENGAGEMENT_EVENTS = {"MessageLoaded": "message.opened", "MessageLinkClicked": "message.clicked"}


def _error(status: int, code: str, message: str):
    response = jsonify(status="error", error=code, message=message, data={"code": code, "message": message})
    response.status_code = status
    return response


def _public_keys():
    """Postal's signing keys: from POSTAL_WEBHOOK_PUBLIC_KEY, else fetched once from the JWKS URL."""
    cache = current_app.extensions.setdefault("controlplane.postal_keys", {})
    if "keys" not in cache:
        settings = current_app.extensions["controlplane.settings"]
        keys = [load_pem(settings.postal_webhook_public_key)] if settings.postal_webhook_public_key else []
        if not keys and settings.postal_jwks_url:
            keys = load_jwks(settings.postal_jwks_url)
        cache["keys"] = keys
    return cache["keys"]


def _verified_body():
    """(raw body, None) when Postal signed it (or unsigned is allowed), else (None, error response)."""
    body = request.get_data(cache=True)  # the raw bytes Postal signed (kept for form parsing)
    settings = current_app.extensions["controlplane.settings"]
    signed = request.headers.get("X-Postal-Signature-256") or request.headers.get("X-Postal-Signature")
    if signed or not settings.postal_webhook_allow_unsigned:
        try:
            verify(body, request.headers, _public_keys())
        except SignatureError as exc:
            log.warning("rejected a Postal webhook: %s", exc)
            return None, _error(401, "InvalidSignature", str(exc))
        except Exception as exc:  # a bad configured key or an unreachable JWKS URL
            log.error("cannot verify Postal webhooks: %s", exc)
            return None, _error(503, "SignatureKeyUnavailable", "Postal's signing key could not be loaded")
    return body, None


@bp.post("/webhooks/postal")
def postal_webhook():
    body, refused = _verified_body()
    if refused is not None:
        return refused
    try:
        document = parse_json_object(body)
    except ValueError as exc:
        return _error(400, "InvalidJSON", str(exc))
    event, uuid, payload = document.get("event"), document.get("uuid"), document.get("payload")
    if not isinstance(event, str) or not isinstance(uuid, str) or not isinstance(payload, dict):
        return _error(422, "InvalidEvent", "expected {event, timestamp, payload, uuid}")
    return jsonify(status=apply_event(event, uuid, payload, body.decode("utf-8", "replace")))


def _message_ref(event: str, payload: dict) -> dict:
    if event == "MessageBounced":
        return payload.get("original_message") or {}
    return payload.get("message") or {}


def apply_event(event: str, uuid: str, payload: dict, raw: str) -> str:
    ref = _message_ref(event, payload)
    postal_id = ref.get("id") if isinstance(ref.get("id"), int) else None
    db.session.add(PostalEvent(uuid=uuid, event=event, received_at=utcnow(), postal_message_id=postal_id, payload=raw))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return "duplicate"  # Postal retried one we already applied
    state = STATE_FOR_EVENT.get(event)
    if state is None and event not in ENGAGEMENT_EVENTS:
        db.session.commit()  # DomainDNSError, SendLimit*: recorded only
        return "ok"
    recipient = _recipient(postal_id, ref.get("token"))
    if recipient is None:
        log.info("Postal event for a message we do not hold", extra={"event": event, "postal_id": postal_id})
        db.session.commit()
        return "ok"
    message = db.session.get(Message, recipient.message_pk)
    if state is not None:
        recipient.status = state
        message.state = state
        message.updated_at = utcnow()
        if state in ("failed", "bounced", "held", "delayed"):
            message.last_error = str(payload.get("details") or payload.get("output") or event)[:2000]
        message_event(f"message.{state}", message, recipient=recipient.address,
                      details=payload.get("details"), output=payload.get("output"))
    else:
        message_event(ENGAGEMENT_EVENTS[event], message, recipient=recipient.address, url=payload.get("url"),
                      ip_address=payload.get("ip_address"), user_agent=payload.get("user_agent"))
    db.session.commit()
    return "ok"


def _recipient(postal_id, token) -> MessageRecipient | None:
    conditions = []
    if postal_id is not None:
        conditions.append(MessageRecipient.postal_id == postal_id)
    if isinstance(token, str) and token:
        conditions.append(MessageRecipient.postal_token == token)
    if not conditions:
        return None
    return db.session.execute(select(MessageRecipient).where(or_(*conditions)).limit(1)).scalar_one_or_none()


@bp.post("/webhooks/postal/inbound")
def postal_inbound():
    """Inbound mail from a Postal HTTP endpoint, JSON or form encoded, Hash or RawMessage format."""
    body, refused = _verified_body()
    if refused is not None:
        return refused
    if (request.content_type or "").startswith("application/json"):
        try:
            document = parse_json_object(body)
        except ValueError as exc:
            return _error(400, "InvalidJSON", str(exc))
    else:
        document = request.form.to_dict()
    if not document.get("rcpt_to") and not document.get("to"):
        return _error(422, "InvalidInbound", "expected Postal's Hash or RawMessage format (no rcpt_to)")
    raw_format = "message" in document and "plain_body" not in document
    postal_id = parse_int(document.get("id"))
    if postal_id is not None and db.session.execute(
            select(InboundMessage).where(InboundMessage.postal_id == postal_id)).scalar_one_or_none():
        return jsonify(status="duplicate")
    inbound = InboundMessage(
        postal_id=postal_id, format="raw" if raw_format else "hash",
        rcpt_to=document.get("rcpt_to") or document.get("to"), mail_from=document.get("mail_from") or document.get("from"),
        subject=None if raw_format else document.get("subject"), payload=json.dumps(document), received_at=utcnow(),
    )
    db.session.add(inbound)
    db.session.flush()
    for key_id in _owners(inbound.rcpt_to):
        record_event("message.inbound", key_id, {"inbound_id": inbound.id, "rcpt_to": inbound.rcpt_to,
                                                 "mail_from": inbound.mail_from, "subject": inbound.subject})
    db.session.commit()
    return jsonify(status="ok", id=inbound.id)


def _owners(rcpt_to: str | None) -> list[int]:
    """Keys whose sender domains include the recipient's domain hear about its inbound mail."""
    from .models import ApiKey
    from .sending import address_domain

    domain = address_domain(rcpt_to or "")
    keys = db.session.execute(select(ApiKey).where(ApiKey.revoked_at.is_(None), ApiKey.allowed_from_domains.is_not(None)))
    return [k.id for k in keys.scalars() if domain and domain in k.from_domains]
