"""WSGI apps the benchmarks serve with the project's gunicorn config.

Served as `bench.apps:make_bare()`, `bench.apps:make_service()`, `bench.apps:make_service(False)` and
`bench.apps:make_document()` (the summary.json baseline, see bench/status.py).

`bare`: a bare Flask app returning a constant JSON body (the baseline).
`service`: the real app (create_app) with a constant-body route added, metrics and tracing on,
every request sampled and spans batched to an in-memory exporter.
`service_untraced`: the same app with metrics and tracing both off (the telemetry baseline).
"""
import os
from collections import deque

from flask import Flask, jsonify
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

CONSTANT = {"status": "ok", "service": "bench", "numbers": [1, 2, 3]}


class RecentSpansExporter(SpanExporter):
    """An in-memory exporter keeping the newest spans, so a long run does not grow without bound
    (an ever-growing list would make the benchmark measure the garbage collector)."""

    def __init__(self, keep: int = 1_000):
        self.spans = deque(maxlen=keep)
        self.exported = 0

    def export(self, spans):
        self.spans.extend(spans)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def _constant():
    return jsonify(CONSTANT)


def make_bare() -> Flask:
    app = Flask("bare")
    app.add_url_rule("/health", "health", _constant)
    app.add_url_rule("/bench/constant", "constant", _constant)
    return app


def make_service(telemetry: bool = True, tracing: bool = True) -> Flask:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from controlplane import create_app
    from controlplane.telemetry.requests import RequestTelemetry

    # Batched, as production exports (OTLP behind a BatchSpanProcessor); every request sampled.
    app = create_app(span_processor=BatchSpanProcessor(RecentSpansExporter()) if telemetry and tracing else None)
    app.add_url_rule("/bench/constant", "constant", _constant)
    if not telemetry:
        # Same app, minus the per-request telemetry middleware: the "both off" baseline.
        assert isinstance(app.wsgi_app, RequestTelemetry)
        app.wsgi_app = app.wsgi_app.wsgi_app
    return app



def make_insert_baseline() -> Flask:
    """The accept baseline: Flask + Flask-SQLAlchemy that only inserts the same message and
    recipient rows a send stores (same tables, same database), and answers with their ids."""
    import json
    import secrets
    import uuid

    from flask import request

    from controlplane.extensions import db
    from controlplane.gateway.models import Message, MessageRecipient
    from controlplane.timeutil import utcnow

    app = Flask("insert-baseline")
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    db.init_app(app)

    @app.post("/baseline/send")
    def send():
        params = request.get_json()
        now = utcnow()
        public_id = str(uuid.uuid4())
        message = Message(public_id=public_id, message_id=f"{public_id}@mailgoat.dev", api_key_id=None,
                          kind="message", state="queued", params=json.dumps(params), from_address=params["from"],
                          subject=params.get("subject"), next_attempt_at=now, attempts=0,
                          created_at=now, updated_at=now)
        db.session.add(message)
        db.session.flush()
        recipient = MessageRecipient(message_pk=message.id, address=params["to"][0], token=secrets.token_hex(8))
        db.session.add(recipient)
        db.session.commit()
        return jsonify({"message_id": message.message_id, "id": recipient.id})

    app.add_url_rule("/baseline/health", "health", _constant)
    return app


def make_document() -> Flask:
    """A bare Flask app answering the bytes in BENCH_DOCUMENT as JSON at any path (the
    summary.json baseline: same payload, none of the work)."""
    from flask import Response

    body = open(os.environ["BENCH_DOCUMENT"], "rb").read()
    app = Flask("document")
    app.add_url_rule("/health", "health", _constant)
    app.add_url_rule("/<path:_path>", "document", lambda _path: Response(body, mimetype="application/json"))
    return app
