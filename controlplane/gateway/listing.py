"""GET /api/v1/messages: filters and an opaque cursor, newest first."""
from __future__ import annotations

import base64

from sqlalchemy import select

from ..extensions import db
from .envelope import GatewayError
from .models import ApiKey, Message, MessageRecipient
from .params import BIGINT_MAX, parse_int
from .reading import flat
from .sending import parse_send_at

DEFAULT_LIMIT, MAX_LIMIT = 50, 100
STATES = ("queued", "scheduled", "sending", "retrying", "sent", "delivered", "delayed", "bounced", "held",
          "failed", "cancelled")


def _cursor_to_id(cursor: str) -> int:
    try:
        pk = parse_int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (ValueError, UnicodeError):
        pk = None
    if pk is None or not 0 < pk <= BIGINT_MAX:
        raise GatewayError("InvalidCursor", "cursor is not one this API returned", 400)
    return pk


def _id_to_cursor(pk: int) -> str:
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


def list_page(key: ApiKey, args) -> dict:
    limit = parse_int(args.get("limit", DEFAULT_LIMIT))
    if limit is None:
        raise GatewayError("InvalidLimit", f"limit must be a number from 1 to {MAX_LIMIT}", 400)
    limit = min(max(limit, 1), MAX_LIMIT)
    query = select(Message)
    if not key.scope_set & {"read", "admin"}:
        query = query.where(Message.api_key_id == key.id)
    if args.get("state"):
        states = [s.strip() for s in args["state"].split(",") if s.strip()]
        unknown = sorted(set(states) - set(STATES))
        if unknown:
            raise GatewayError("InvalidState", f"unknown state(s) {', '.join(unknown)}; known: {', '.join(STATES)}", 400)
        query = query.where(Message.state.in_(states))
    if args.get("tag"):
        query = query.where(Message.tag == args["tag"])
    if args.get("recipient"):
        query = query.where(Message.id.in_(
            select(MessageRecipient.message_pk).where(MessageRecipient.address == args["recipient"].strip())
        ))
    for name, compare in (("since", Message.created_at.__ge__), ("until", Message.created_at.__lt__)):
        if args.get(name):
            query = query.where(compare(parse_send_at(args[name])))
    if args.get("cursor"):
        query = query.where(Message.id < _cursor_to_id(args["cursor"]))
    rows = db.session.execute(query.order_by(Message.id.desc()).limit(limit + 1)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"messages": [flat(row) for row in rows],
            "next_cursor": _id_to_cursor(rows[-1].id) if more else None}
