"""WSGI apps the benchmarks serve with the project's gunicorn config.

Served as `bench.apps:make_bare()`, `bench.apps:make_service()` and `bench.apps:make_service(False)`.

`bare`: a bare Flask app returning a constant JSON body (the baseline).
`service`: the real app (create_app) with a constant-body route added, metrics and tracing on,
every request sampled and spans batched to an in-memory exporter.
`service_untraced`: the same app with metrics and tracing both off (the telemetry baseline).
"""
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

