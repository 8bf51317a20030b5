"""Accepting mail: validate exactly as Postal does, store it once, answer with Postal's envelope.

Postal is never called here: the message is stored as `queued` (or `scheduled`) in one
transaction with its idempotency key, and the delivery worker sends it.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import uuid
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..events.emit import message_event
from ..extensions import db
from ..timeutil import utcnow
from .envelope import GatewayError
from .models import ApiKey, Message, MessageRecipient

MAX_ADDRESSES = 50
TOKEN_ALPHABET = string.ascii_letters + string.digits

# Postal's own messages for its send/message errors, checked in this order; only the first is reported.
POSTAL_MESSAGES = {
    "NoRecipients": "There are no recipients defined to receive this message",
    "TooManyToAddresses": "The maximum number of To addresses has been reached (maximum 50)",
    "TooManyCCAddresses": "The maximum number of CC addresses has been reached (maximum 50)",
    "TooManyBCCAddresses": "The maximum number of BCC addresses has been reached (maximum 50)",
    "NoContent": "There is no content defined for this e-mail",
    "FromAddressMissing": "The From address is missing and is required",
    "UnauthenticatedFromAddress": "The From address is not authorised to send mail from this server",
    "AttachmentMissingName": "An attachment is missing a name",
    "AttachmentMissingData": "An attachment is missing data",
}


def postal_error(code: str) -> GatewayError:
    return GatewayError(code, POSTAL_MESSAGES[code])


def parameter_error(message: str) -> GatewayError:
    return GatewayError("ParameterError", message, 422, envelope_status="parameter-error")


def addresses(value) -> list[str]:
    """Postal accepts an array or a comma-separated string."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    return [str(item).strip() for item in items if str(item).strip()]


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def address_domain(address: str) -> str:
    # "Name <user@example.com>" or "user@example.com"
    inner = address.rsplit("<", 1)[-1].rstrip(">").strip()
    return inner.rsplit("@", 1)[-1].lower() if "@" in inner else ""


def validate_message(params: dict, key: ApiKey, max_attachment_bytes: int) -> dict:
    to, cc, bcc = (addresses(params.get(name)) for name in ("to", "cc", "bcc"))
    if not (to or cc or bcc):
        raise postal_error("NoRecipients")
    for name, values in (("TooManyToAddresses", to), ("TooManyCCAddresses", cc), ("TooManyBCCAddresses", bcc)):
        if len(values) > MAX_ADDRESSES:
            raise postal_error(name)
    if _blank(params.get("plain_body")) and _blank(params.get("html_body")):
        raise postal_error("NoContent")
    sender_from = params.get("from") or key.default_sender
    if _blank(sender_from):
        raise postal_error("FromAddressMissing")
    if key.from_domains and address_domain(sender_from) not in key.from_domains:
        raise postal_error("UnauthenticatedFromAddress")
    attachments = _attachments(params.get("attachments"), max_attachment_bytes)
    headers = params.get("headers") or {}
    if not isinstance(headers, dict):
        raise parameter_error("`headers` parameter must be a hash")
    return {
        "to": to, "cc": cc, "bcc": bcc, "from": sender_from, "sender": params.get("sender"),
        "subject": params.get("subject"), "reply_to": params.get("reply_to"),
        "plain_body": params.get("plain_body"), "html_body": params.get("html_body"),
        "tag": params.get("tag"), "bounce": bool(params.get("bounce")), "headers": headers,
        "attachments": attachments,
    }


def _attachments(raw, max_bytes: int) -> list[dict]:
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise parameter_error("`attachments` parameter must be an array")
    result = []
    for attachment in raw:
        attachment = attachment if isinstance(attachment, dict) else {}
        if _blank(attachment.get("name")):
            raise postal_error("AttachmentMissingName")
        if _blank(attachment.get("data")):
            raise postal_error("AttachmentMissingData")
        try:
            size = len(base64.b64decode(attachment["data"], validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise GatewayError("AttachmentInvalidData",
                               f"Attachment {attachment['name']!r}: data must be base64") from None
        if size > max_bytes:
            raise GatewayError("AttachmentTooLarge",
                               f"Attachment {attachment['name']!r} is {size} bytes; the limit is {max_bytes}", 413)
        result.append({"name": attachment["name"],
                       "content_type": attachment.get("content_type") or "application/octet-stream",
                       "data": attachment["data"]})
    return result


def validate_raw(params: dict) -> dict:
    for name in ("mail_from", "rcpt_to", "data"):
        if _blank(params.get(name)) or params.get(name) == []:
            raise parameter_error(f"`{name}` parameter is required but is missing")
    rcpt_to = addresses(params["rcpt_to"])
    try:
        base64.b64decode(params["data"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise parameter_error("`data` parameter must be base64-encoded") from None
    return {"mail_from": params["mail_from"], "rcpt_to": rcpt_to, "data": params["data"],
            "bounce": bool(params.get("bounce"))}


def parse_send_at(value) -> datetime | None:
    """ISO-8601 or epoch seconds; None for "now"."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise GatewayError("InvalidSendAt", f"send_at must be ISO-8601 or epoch seconds, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def idempotency_key(params: dict, header_value: str | None) -> str | None:
    headers = params.get("headers") if isinstance(params.get("headers"), dict) else {}
    for name, value in headers.items():
        if str(name).lower() == "x-idempotency-key" and not _blank(value):
            return str(value)[:255]
    return header_value[:255] if header_value and header_value.strip() else None


def response_data(message: Message, recipients: list[MessageRecipient]) -> dict:
    """What send answers: the message id and each recipient's id and token, as Postal does."""
    return {"message_id": message.message_id,
            "messages": {r.address: {"id": r.id, "token": r.token} for r in recipients}}


def replay(key: ApiKey, idem_key: str | None) -> dict | None:
    """The original answer for a repeated idempotency key, rebuilt from what was stored."""
    if idem_key is None:
        return None
    message = db.session.execute(
        select(Message).where(Message.api_key_id == key.id, Message.idempotency_key == idem_key)
    ).scalar_one_or_none()
    if message is None:
        return None
    recipients = db.session.execute(
        select(MessageRecipient).where(MessageRecipient.message_pk == message.id).order_by(MessageRecipient.id)
    ).scalars().all()
    return response_data(message, recipients)


def accept(key: ApiKey, kind: str, normalised: dict, send_at: datetime | None, idem_key: str | None) -> dict:
    """Store the message and return the response data; idempotent on (key, idempotency key).

    The common case (a new key) costs no lookup: the unique constraint on (key, idempotency key)
    turns a repeat into an IntegrityError, and the original answer is rebuilt from the rows.
    """
    try:
        data = add_message(key, kind, normalised, send_at, idem_key)
        db.session.commit()
    except IntegrityError:
        # A repeat of an idempotency key (or a race with the first request): answer as it was.
        db.session.rollback()
        previous = replay(key, idem_key)
        if previous is None:
            raise
        return previous
    return data


def add_message(key: ApiKey, kind: str, normalised: dict, send_at: datetime | None, idem_key: str | None) -> dict:
    """Add the message and its recipients to the session, flushed but not committed, so that a
    caller inside a larger unit of work (an outbox batch) decides; returns the response data."""
    now = utcnow()
    public_id = str(uuid.uuid4())
    sender = normalised["from"] if kind == "message" else normalised["mail_from"]
    message_id = f"{public_id}@{address_domain(sender) or 'mailgoat.local'}"
    recipients = (normalised["to"] + normalised["cc"] + normalised["bcc"]) if kind == "message" else normalised["rcpt_to"]
    scheduled = send_at is not None and send_at > now
    message = Message(
        public_id=public_id, message_id=message_id, api_key_id=key.id, kind=kind,
        state="scheduled" if scheduled else "queued", params=json.dumps(normalised),
        from_address=sender, subject=normalised.get("subject"), tag=normalised.get("tag"),
        idempotency_key=idem_key, send_at=send_at, next_attempt_at=send_at if scheduled else now,
        attempts=0, created_at=now, updated_at=now,
    )
    db.session.add(message)
    db.session.flush()
    rows = []
    for address in dict.fromkeys(recipients):
        row = MessageRecipient(message_pk=message.id, address=address, token=new_token())
        db.session.add(row)
        rows.append(row)
    message_event("message.queued", message)
    db.session.flush()
    return response_data(message, rows)


def new_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(16))
