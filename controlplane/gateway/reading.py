"""Finding a message by any id a client may hold, and showing it the way MailGoat clients read it."""
from __future__ import annotations

import json
import re

from sqlalchemy import or_, select

from ..extensions import db
from ..timeutil import isoformat
from .envelope import GatewayError
from .models import ApiKey, Message, MessageRecipient
from .params import parse_int
from .sending import attachment_size

_TOKEN = re.compile(r"^[A-Za-z0-9]{16}$")
# Our public id (a UUID) and the message id send returns (that UUID @ the sender's domain).
_MESSAGE_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(@[^\s@]+)?$", re.I)


def not_found(identifier, status: int | None = None) -> GatewayError:
    return GatewayError("MessageNotFound", "No message found matching provided ID", status, extra={"id": identifier})


def could_name_a_message(identifier) -> bool:
    """Whether `identifier` has the shape of an id that send, Postal or a token hands out."""
    text = str(identifier).strip()
    number = parse_int(text)
    return (number is not None and number >= 0) or bool(_TOKEN.match(text) or _MESSAGE_ID.match(text))


def find_message_for_postal(identifier, key: ApiKey) -> tuple[Message, MessageRecipient]:
    """`find_message` for Postal's own routes (messages/message, messages/deliveries).

    An id no client could have been given (such as `config-validate-test-id`, the Node CLI's
    reachability probe) is answered as real Postal answers it: HTTP 200 with `status: "error"`
    and MessageNotFound, which the probes read as "server up, key accepted". A well-formed id
    that is not found stays a 404, so reading an unknown message still fails clearly.
    """
    if not could_name_a_message(identifier):
        raise not_found(identifier, status=200)
    return find_message(identifier, key)


def find_message(identifier, key: ApiKey) -> tuple[Message, MessageRecipient]:
    """By our message id (what send returned), a per-recipient numeric id (ours, then Postal's), or a token.

    Keys holding `read` (or `admin`) see every message; `send`-only keys see their own.
    """
    text = str(identifier).strip()
    recipient = None
    number = parse_int(text)
    if number is not None and number >= 0:
        recipient = (db.session.get(MessageRecipient, number)
                     or db.session.execute(select(MessageRecipient).where(MessageRecipient.postal_id == number)
                                           .limit(1)).scalar_one_or_none())
    elif _TOKEN.match(text):
        recipient = db.session.execute(
            select(MessageRecipient).where(or_(MessageRecipient.token == text, MessageRecipient.postal_token == text))
            .limit(1)
        ).scalar_one_or_none()
    if recipient is not None:
        message = db.session.get(Message, recipient.message_pk)
    else:
        message = db.session.execute(
            select(Message).where(or_(Message.message_id == text, Message.public_id == text))
        ).scalar_one_or_none()
    if message is None or not _may_read(key, message):
        raise not_found(identifier)
    if recipient is None:
        # A message-level id stands for its first recipient where Postal speaks per recipient.
        recipient = db.session.execute(
            select(MessageRecipient).where(MessageRecipient.message_pk == message.id)
            .order_by(MessageRecipient.id).limit(1)
        ).scalar_one_or_none()
    return message, recipient


def _may_read(key: ApiKey, message: Message) -> bool:
    return bool(key.scope_set & {"read", "admin"}) or message.api_key_id == key.id


def recipients_of(message: Message) -> list[MessageRecipient]:
    return list(db.session.execute(
        select(MessageRecipient).where(MessageRecipient.message_pk == message.id).order_by(MessageRecipient.id)
    ).scalars())


def flat(message: Message) -> dict:
    """GET /api/v1/messages/<id>: flat, with `id` equal to the id send returned."""
    params = json.loads(message.params)
    plain, html = params.get("plain_body"), params.get("html_body")
    return {
        "id": message.message_id,
        "message_id": message.message_id,
        "to": params.get("to", params.get("rcpt_to", [])),
        "cc": params.get("cc", []),
        "bcc": params.get("bcc", []),
        "from": message.from_address,
        "subject": message.subject,
        "plain_body": plain,
        "html_body": html,
        "body": plain if plain is not None else html,
        "tag": message.tag,
        "status": message.state,
        "attempts": message.attempts,
        "error": {"code": message.error_code, "message": message.last_error} if message.error_code else None,
        "send_at": isoformat(message.send_at),
        "created_at": isoformat(message.created_at),
        "sent_at": isoformat(message.sent_at),
        "recipients": [
            {"address": r.address, "id": r.id, "token": r.token, "postal_id": r.postal_id, "status": r.status}
            for r in recipients_of(message)
        ],
    }


# Our states as Postal's message statuses, for clients that speak Postal.
POSTAL_STATUS = {
    "queued": "Pending", "scheduled": "Pending", "sending": "Pending", "retrying": "Pending",
    "sent": "Sent", "delivered": "Sent", "delayed": "SoftFail", "bounced": "Bounced", "held": "Held",
    "failed": "HardFail", "cancelled": "HoldCancelled",
}
EXPANSIONS = ("status", "details", "inspection", "plain_body", "html_body", "attachments", "headers",
              "raw_message", "activity_entries")
# What only Postal holds; asked of Postal when a client wants it and the message reached Postal.
POSTAL_ONLY = {"inspection", "raw_message", "activity_entries"}


def requested_expansions(value) -> list[str]:
    if value is True or value == "true":
        return list(EXPANSIONS)
    if value in (None, False, ""):
        return []
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    return [e for e in (str(i).strip() for i in items) if e in EXPANSIONS]


def postal_view(message: Message, recipient: MessageRecipient, expansions: list[str]) -> dict:
    """Postal's messages/message answer for one recipient, from our store."""
    params = json.loads(message.params)
    view = {"id": recipient.id, "token": recipient.token}
    state = recipient.status if recipient.status not in (None, "sent") else message.state
    if "status" in expansions:
        view["status"] = {"status": POSTAL_STATUS.get(state, "Pending"),
                          "last_delivery_attempt": message.sent_at.timestamp() if message.sent_at else None,
                          "held": state == "held", "hold_expiry": None}
    if "details" in expansions:
        view["details"] = {
            "rcpt_to": recipient.address, "mail_from": message.from_address,
            "subject": message.subject, "message_id": message.message_id,
            "timestamp": message.created_at.timestamp(), "direction": "outgoing", "size": len(message.params),
            "bounce": bool(params.get("bounce")), "bounce_for_id": 0, "tag": message.tag, "received_with_ssl": None,
        }
    for field in ("plain_body", "html_body"):
        if field in expansions:
            view[field] = params.get(field)
    if "attachments" in expansions:
        view["attachments"] = [{"filename": a["name"], "content_type": a["content_type"], "data": a["data"],
                                "size": attachment_size(a["data"]), "hash": None} for a in params.get("attachments", [])]
    if "headers" in expansions:
        view["headers"] = {k.lower(): [v] for k, v in (params.get("headers") or {}).items()}
    return view
