"""GET /api/v1/events: the caller's events as Server-Sent Events, resumable with Last-Event-ID.

The stream polls the event log (shared by every instance) and ends after EVENTS_STREAM_SECONDS so
a gunicorn thread is never held forever; EventSource clients reconnect with Last-Event-ID and
miss nothing.
"""
from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, request, stream_with_context
from sqlalchemy import select

from ..extensions import db
from ..gateway.auth import requires
from ..gateway.envelope import GatewayError, failure
from .models import Event

bp = Blueprint("event_stream", __name__)
bp.register_error_handler(GatewayError, failure)
KEEPALIVE_SECONDS = 15


def _start_after() -> int:
    value = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if value is None:
        # A new stream starts from now, not from the beginning of history.
        return db.session.execute(select(db.func.max(Event.id))).scalar_one() or 0
    if not value.isdigit():
        raise GatewayError("InvalidLastEventId", "Last-Event-ID must be an id this stream sent", 400)
    return int(value)


@bp.get("/api/v1/events")
@requires("send", "read")
def events():
    settings = current_app.extensions["controlplane.settings"]
    key_id = g.api_key.id
    last_id = _start_after()
    db.session.remove()

    def generate():
        nonlocal last_id
        deadline = time.monotonic() + settings.events_stream_seconds
        last_sent = time.monotonic()
        yield f"retry: {int(settings.events_poll_seconds * 1000) + 1000}\n\n"
        while time.monotonic() < deadline:
            rows = db.session.execute(
                select(Event).where(Event.api_key_id == key_id, Event.id > last_id).order_by(Event.id).limit(100)
            ).scalars().all()
            db.session.remove()  # never hold a connection while idle
            for row in rows:
                last_id = row.id
                yield f"id: {row.id}\nevent: {row.type}\ndata: {row.payload}\n\n"
                last_sent = time.monotonic()
            if not rows:
                if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                time.sleep(settings.events_poll_seconds)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(generate()), mimetype="text/event-stream", headers=headers)
