"""Accepting mail: validate exactly as Postal does, store it once, answer with Postal's envelope.

Two steps check a send: the route's declared model (schemas.py: types, lengths, addresses,
characters), then Postal's own checks here, with its codes, in its order. Postal is never called
here: the message is stored as `queued` (or `scheduled`) in one transaction with its idempotency
key, and the delivery worker sends it.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..events.emit import message_event
from ..extensions import db
from ..timeutil import as_utc, utcnow
from .envelope import GatewayError
from .models import ApiKey, Message, MessageRecipient
from .schemas import MAX_ADDRESSES, SendMessage, SendRaw, parse, parse_send_at

# MAX_ADDRESSES and parse_send_at are read from here by other modules (alerting, listing).
__all__ = ["MAX_ADDRESSES", "accept", "add_message", "idempotency_key", "parse_send_at", "validate_message",
           "validate_raw"]

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


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def address_domain(address: str) -> str:
    # "Name <user@example.com>" or "user@example.com"
    inner = address.rsplit("<", 1)[-1].rstrip(">").strip()
    return inner.rsplit("@", 1)[-1].lower() if "@" in inner else ""


def attachment_size(data: str) -> int:
    """The decoded byte count of base64 `data` (a 17-byte file is 17, whatever its padding)."""
    return len(base64.b64decode(data))


def validate_message(params: dict, key: ApiKey, max_attachment_bytes: int) -> dict:
    """send/message parameters checked (types first, then Postal's codes in Postal's order) and normalised."""
    return normalise_message(parse(SendMessage, params), key, max_attachment_bytes)


def normalise_message(declared: SendMessage, key: ApiKey, max_attachment_bytes: int) -> dict:
    to, cc, bcc = declared.to, declared.cc, declared.bcc
    if not (to or cc or bcc):
        raise postal_error("NoRecipients")
    for name, values in (("TooManyToAddresses", to), ("TooManyCCAddresses", cc), ("TooManyBCCAddresses", bcc)):
        if len(values) > MAX_ADDRESSES:
            raise postal_error(name)
    plain_body = declared.plain_body if not _blank(declared.plain_body) else declared.body
    if _blank(plain_body) and _blank(declared.html_body):
        raise postal_error("NoContent")
    sender_from = declared.from_ or key.default_sender
    if _blank(sender_from):
        raise postal_error("FromAddressMissing")
    if key.from_domains and address_domain(sender_from) not in key.from_domains:
        raise postal_error("UnauthenticatedFromAddress")
    return {
        "to": to, "cc": cc, "bcc": bcc, "from": sender_from, "sender": declared.sender,
        "subject": declared.subject, "reply_to": declared.reply_to,
        "plain_body": plain_body, "html_body": declared.html_body,
        "tag": declared.tag, "bounce": bool(declared.bounce), "headers": declared.headers or {},
        "attachments": _attachments(declared.attachments or [], max_attachment_bytes),
    }


def _attachments(attachments: list, max_bytes: int) -> list[dict]:
    result = []
    for attachment in attachments:
        if _blank(attachment.name):
            raise postal_error("AttachmentMissingName")
        if _blank(attachment.data):
            raise postal_error("AttachmentMissingData")
        try:
            size = len(base64.b64decode(attachment.data, validate=True))
        except (binascii.Error, ValueError):
            raise GatewayError("AttachmentInvalidData",
                               f"Attachment {attachment.name!r}: data must be base64") from None
        if size > max_bytes:
            raise GatewayError("AttachmentTooLarge",
                               f"Attachment {attachment.name!r} is {size} bytes; the limit is {max_bytes}", 413)
        result.append({"name": attachment.name,
                       "content_type": attachment.content_type or "application/octet-stream",
                       "data": attachment.data})
    return result


def validate_raw(params: dict) -> dict:
    """send/raw parameters checked and normalised."""
    return normalise_raw(parse(SendRaw, params))


def normalise_raw(declared: SendRaw) -> dict:
    for name in ("mail_from", "rcpt_to", "data"):
        if _blank(getattr(declared, name)) or getattr(declared, name) == []:
            raise parameter_error(f"`{name}` parameter is required but is missing")
    try:
        base64.b64decode(declared.data, validate=True)
    except (binascii.Error, ValueError):
        raise parameter_error("`data` parameter must be base64-encoded") from None
    return {"mail_from": declared.mail_from, "rcpt_to": declared.rcpt_to, "data": declared.data,
            "bounce": bool(declared.bounce)}


def idempotency_key(params: dict, header_value: str | None) -> str | None:
    """The send's idempotency key: `headers["X-Idempotency-Key"]`, else the Idempotency-Key header."""
    headers = params.get("headers") if isinstance(params.get("headers"), dict) else {}
    for name, value in headers.items():
        if str(name).lower() == "x-idempotency-key" and not _blank(value):
            return str(value)[:255]
    if not header_value or not header_value.strip():
        return None
    if "\x00" in header_value:  # request headers skip request_params(), and PostgreSQL cannot store it
        raise GatewayError("InvalidCharacters", "The Idempotency-Key header contains a NUL byte.", 400)
    return header_value[:255]


def response_data(message: Message, recipients: list[MessageRecipient]) -> dict:
    """What send answers: the message id and each recipient's id and token, as Postal does."""
    return {"message_id": message.message_id,
            "messages": {r.address: {"id": r.id, "token": r.token} for r in recipients}}


def stored_message(key: ApiKey, idem_key: str | None) -> Message | None:
    """The message an idempotency key of this API key already stands for, if any."""
    if idem_key is None:
        return None
    return db.session.execute(
        select(Message).where(Message.api_key_id == key.id, Message.idempotency_key == idem_key)
    ).scalar_one_or_none()


def replay(message: Message) -> dict:
    """The original answer for a repeated idempotency key, rebuilt from what was stored."""
    recipients = db.session.execute(
        select(MessageRecipient).where(MessageRecipient.message_pk == message.id).order_by(MessageRecipient.id)
    ).scalars().all()
    return response_data(message, recipients)


def same_request(message: Message, kind: str, normalised: dict, send_at: datetime | None) -> bool:
    """Whether a repeat asks for what `message` was stored from (its parameters are stored whole)."""
    return (message.kind == kind and json.loads(message.params) == json.loads(message_params(normalised))
            and as_utc(message.send_at) == send_at)


def accept(key: ApiKey, kind: str, normalised: dict, send_at: datetime | None, idem_key: str | None,
           refuse_changed_repeat: bool = False) -> dict:
    """Store the message and return the response data; idempotent on (key, idempotency key).

    The common case (a new key) costs no lookup: the unique constraint on (key, idempotency key)
    turns a repeat into an IntegrityError, and the original answer is rebuilt from the rows.
    `refuse_changed_repeat`: a repeat with a different message is a client bug, answered 409
    IdempotencyKeyMismatch (CONTRACTS.md §2); our own senders, whose keys stand for "this event
    was mailed", keep the first message instead.
    """
    try:
        data = add_message(key, kind, normalised, send_at, idem_key)
        db.session.commit()
    except IntegrityError:
        # A repeat of an idempotency key (or a race with the first request): answer as it was.
        db.session.rollback()
        previous = stored_message(key, idem_key)
        if previous is None:
            raise
        if refuse_changed_repeat and not same_request(previous, kind, normalised, send_at):
            raise GatewayError("IdempotencyKeyMismatch",
                               "This idempotency key was already used for a different message; "
                               "use a new key for a new message.", 409) from None
        return replay(previous)
    return data


def message_params(normalised: dict) -> str:
    """The parameters as stored and later sent to Postal: JSON that must encode as UTF-8.

    What cannot be encoded here can never be sent, so it is refused now instead of failing
    every delivery attempt later.
    """
    text = json.dumps(normalised)
    try:
        json.dumps(normalised, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise GatewayError("InvalidCharacters", "The message holds text that cannot be encoded as UTF-8 "
                           "(a lone surrogate).", 400) from None
    return text


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
        state="scheduled" if scheduled else "queued", params=message_params(normalised),
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
