"""GET /api/v1/messages: filters and an opaque cursor, newest first."""
from __future__ import annotations

import base64

from sqlalchemy import select

from ..extensions import db
from .envelope import GatewayError
from .models import ApiKey, Message, MessageRecipient
from .params import BIGINT_MAX, parse_int
from .reading import flat
from .schemas import MessageFilters


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


def list_page(key: ApiKey, filters: MessageFilters) -> dict:
    limit = filters.limit
    query = select(Message)
    if not key.scope_set & {"read", "admin"}:
        query = query.where(Message.api_key_id == key.id)
    if filters.state:
        query = query.where(Message.state.in_(filters.state))
    if filters.tag:
        query = query.where(Message.tag == filters.tag)
    if filters.recipient:
        query = query.where(Message.id.in_(
            select(MessageRecipient.message_pk).where(MessageRecipient.address == filters.recipient)
        ))
    if filters.since:
        query = query.where(Message.created_at >= filters.since)
    if filters.until:
        query = query.where(Message.created_at < filters.until)
    if filters.cursor:
        query = query.where(Message.id < _cursor_to_id(filters.cursor))
    rows = db.session.execute(query.order_by(Message.id.desc()).limit(limit + 1)).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {"messages": [flat(row) for row in rows],
            "next_cursor": _id_to_cursor(rows[-1].id) if more else None}
