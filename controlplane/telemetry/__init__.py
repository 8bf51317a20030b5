"""Telemetry wiring: logs, Sentry, tracing, request metrics, pool gauges and /metrics."""
from __future__ import annotations

from .pool import watch_pool
from .request_stats import RequestStatsRecorder
from .requests import RequestTelemetry, RouteRecordingRequest
from .sentry import init_sentry
from .server_span import ServerSpans
from .tracing import build_tracing, instrument_engine
from .traffic import ProbeRoutes


def init_telemetry(app, settings, engine, *, span_exporter=None, span_processor=None, sentry_transport=None):
    init_sentry(settings, sentry_transport)
    tracing = build_tracing(settings, span_exporter, span_processor)
    provider = tracing.provider if tracing else None
    app.extensions["controlplane.tracer_provider"] = provider
    instrument_engine(engine, provider)
    watch_pool(engine)
    stats = RequestStatsRecorder(app, settings.request_stats_flush_seconds, settings.instance_id)
    app.extensions["controlplane.request_stats"] = stats
    server_spans = ServerSpans(tracing.provider, tracing.processors) if tracing else None
    app.request_class = RouteRecordingRequest
    app.wsgi_app = RequestTelemetry(app.wsgi_app, server_spans, stats, ProbeRoutes(app))

    from .views import bp

    app.register_blueprint(bp)
    return provider
