"""GET /api/v1/events: the caller's events as Server-Sent Events, resumable with Last-Event-ID.

An open stream must never cost the API a request thread: gunicorn runs the gevent worker
(gunicorn.conf.py), where a stream is a greenlet waiting on an event. Each web worker process:

- admits at most EVENTS_STREAMS_MAX open streams, and EVENTS_STREAMS_PER_KEY per API key
  (`StreamSlots`); beyond either, 503 with Retry-After (`EventStreamsFull`, `TooManyEventStreams`);
- polls the event log once per EVENTS_POLL_SECONDS for all its streams (`EventWatch`) and wakes
  only the streams whose key has new events, so N idle streams cost one query per interval, not N;
- ends a stream after EVENTS_STREAM_SECONDS, or as soon as the process starts draining (SIGTERM),
  so deploys finish; EventSource clients reconnect with Last-Event-ID and miss nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import func, select

from ..extensions import db
from ..gateway.auth import requires
from ..gateway.envelope import GatewayError, failure
from ..gateway.schemas import declared_query
from .models import Event

log = logging.getLogger(__name__)

bp = Blueprint("event_stream", __name__)
bp.register_error_handler(GatewayError, failure)
EXTENSION = "controlplane.event_streams"
KEEPALIVE_SECONDS = 15
# Another process (or machine, behind Fly's proxy) may have room sooner than this key's own streams end.
FULL_RETRY_AFTER_SECONDS = 5
PER_KEY_RETRY_AFTER_SECONDS = 30
WATCH_BATCH = 10_000


class StreamSlots:
    """The open streams of this process, in all and per key."""

    def __init__(self, most: int, per_key: int):
        self.most = most
        self.per_key = per_key
        self._lock = threading.Lock()
        self._by_key: Counter[int] = Counter()

    def take(self, key_id: int) -> None:
        """Count one more stream for `key_id`, or raise the 503 that refuses it."""
        with self._lock:
            if self._by_key[key_id] >= self.per_key:
                raise GatewayError("TooManyEventStreams",
                                   f"This key already has {self.per_key} open event streams here; close one first",
                                   503, extra={"limit": self.per_key},
                                   headers={"Retry-After": str(PER_KEY_RETRY_AFTER_SECONDS)})
            if sum(self._by_key.values()) >= self.most:
                raise GatewayError("EventStreamsFull", "This server holds as many event streams as it can; retry later",
                                   503, extra={"limit": self.most},
                                   headers={"Retry-After": str(FULL_RETRY_AFTER_SECONDS)})
            self._by_key[key_id] += 1

    def give_back(self, key_id: int) -> None:
        with self._lock:
            self._by_key[key_id] -= 1
            if self._by_key[key_id] <= 0:
                del self._by_key[key_id]


class EventWatch:
    """One poller of the event log for every stream of this process.

    It runs (a thread; a greenlet under gevent) only while some stream is subscribed, so the app
    factory starts nothing. It sets a stream's wake-up event when its key has new events, and
    every stream's when the process starts draining."""

    def __init__(self, app, poll_seconds: float):
        self._app = app
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._wakers: dict[int, set[threading.Event]] = {}
        self._seen: int | None = None
        self._thread: threading.Thread | None = None

    def subscribe(self, key_id: int) -> threading.Event:
        wake = threading.Event()
        with self._lock:
            self._wakers.setdefault(key_id, set()).add(wake)
            if self._thread is None:
                self._seen = None  # a gap since the last run is not worth reading through
                self._thread = threading.Thread(target=self._run, name="event-watch", daemon=True)
                self._thread.start()
        return wake

    def unsubscribe(self, key_id: int, wake: threading.Event) -> None:
        with self._lock:
            wakers = self._wakers.get(key_id, set())
            wakers.discard(wake)
            if not wakers:
                self._wakers.pop(key_id, None)

    def _run(self) -> None:
        while self._still_needed():
            try:
                with self._app.app_context():
                    self._wake(self._keys_with_new_events())
            except Exception as exc:  # the database may be down: the next round reads on from _seen
                log.warning("event watch could not read the event log: %s", exc)
            if self._app.extensions["controlplane.health"].lifecycle.draining:
                self._wake_everyone()
            time.sleep(self._poll_seconds)

    def _still_needed(self) -> bool:
        with self._lock:
            if not self._wakers:
                self._thread = None
                return False
            return True

    def _keys_with_new_events(self) -> set[int]:
        try:
            if self._seen is None:
                self._seen = db.session.execute(select(func.max(Event.id))).scalar_one() or 0
                # An event may have come between a stream's first read and this one: all read again.
                return set(self._wakers)
            rows = db.session.execute(select(Event.id, Event.api_key_id).where(Event.id > self._seen)
                                      .order_by(Event.id).limit(WATCH_BATCH)).all()
        finally:
            db.session.remove()
        if rows:
            self._seen = rows[-1].id
        return {row.api_key_id for row in rows}

    def _wake(self, key_ids: set[int]) -> None:
        with self._lock:
            for key_id in key_ids:
                for wake in self._wakers.get(key_id, ()):
                    wake.set()

    def _wake_everyone(self) -> None:
        with self._lock:
            for wakers in self._wakers.values():
                for wake in wakers:
                    wake.set()


class EventStreams:
    def __init__(self, app, settings):
        self.slots = StreamSlots(settings.events_streams_max, settings.events_streams_per_key)
        self.watch = EventWatch(app, settings.events_poll_seconds)


@bp.record_once
def _init_streams(state) -> None:
    app = state.app
    app.extensions[EXTENSION] = EventStreams(app, app.extensions["controlplane.settings"])


def _start_after() -> int:
    header = request.headers.get("Last-Event-ID")
    # The header (what EventSource sends on reconnecting) stands in for the query parameter.
    asked = declared_query({"last_event_id": header} if header else None)
    if asked.last_event_id is None:
        # A new stream starts from now, not from the beginning of history.
        return db.session.execute(select(func.max(Event.id))).scalar_one() or 0
    return asked.last_event_id


def _events_after(app, key_id: int, last_id: int) -> list[tuple[int, str, str]]:
    # An app context per read, not the request's for the stream's life: hold no connection while idle.
    with app.app_context():
        try:
            return [tuple(row) for row in db.session.execute(
                select(Event.id, Event.type, Event.payload)
                .where(Event.api_key_id == key_id, Event.id > last_id).order_by(Event.id).limit(100))]
        finally:
            db.session.remove()


def _sse(app, key_id: int, last_id: int, streams: EventStreams, settings, lifecycle):
    deadline = time.monotonic() + settings.events_stream_seconds
    wake = streams.watch.subscribe(key_id)
    try:
        yield f"retry: {int(settings.events_poll_seconds * 1000) + 1000}\n\n"
        rows = _events_after(app, key_id, last_id)  # what came before this stream subscribed
        while True:
            for last_id, event_type, payload in rows:
                yield f"id: {last_id}\nevent: {event_type}\ndata: {payload}\n\n"
            remaining = deadline - time.monotonic()
            if remaining <= 0 or lifecycle.draining:
                return
            if len(rows) == 100:  # a backlog: read on without waiting
                rows = _events_after(app, key_id, last_id)
                continue
            # Streams read only when the watch wakes them: 500 streams reading on their own would
            # queue the API behind their reads for the pool's connections.
            wake.wait(min(remaining, KEEPALIVE_SECONDS))
            # Read the flag, not wait()'s answer: a wake-up set just after the wait timed out
            # would otherwise be cleared unread and the events would wait for the next one.
            woken = wake.is_set()
            wake.clear()
            rows = _events_after(app, key_id, last_id) if woken and not lifecycle.draining else []
            if not woken:
                yield ": keep-alive\n\n"  # also how a stream whose client left finds out
    finally:
        streams.watch.unsubscribe(key_id, wake)


@bp.get("/api/v1/events")
@requires("send", "read")
def events():
    settings = current_app.extensions["controlplane.settings"]
    streams: EventStreams = current_app.extensions[EXTENSION]
    lifecycle = current_app.extensions["controlplane.health"].lifecycle
    key_id = g.api_key.id
    last_id = _start_after()
    if lifecycle.draining:
        raise GatewayError("EventStreamsFull", "This server is shutting down; retry later", 503,
                           headers={"Retry-After": str(FULL_RETRY_AFTER_SECONDS)})
    streams.slots.take(key_id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    app = current_app._get_current_object()
    response = Response(_sse(app, key_id, last_id, streams, settings, lifecycle),
                        mimetype="text/event-stream", headers=headers)
    response.call_on_close(lambda: streams.slots.give_back(key_id))
    return response
