"""Telemetry wiring: logs, Sentry, tracing, request metrics, pool gauges and /metrics."""
from __future__ import annotations

from .pool import watch_pool
from .request_stats import RequestStatsRecorder
from .requests import RequestTelemetry
from .sentry import init_sentry
from .tracing import build_tracer_provider, instrument_engine

# Probes and scrapes would drown real traffic in the trace store.
DEFAULT_UNTRACED_PATHS = frozenset({"/health", "/ready", "/live", "/metrics"})


def init_telemetry(app, settings, engine, *, span_exporter=None, sentry_transport=None):
    init_sentry(settings, sentry_transport)
    provider = build_tracer_provider(settings, span_exporter)
    app.extensions["controlplane.tracer_provider"] = provider
    instrument_engine(engine, provider)
    watch_pool(engine)
    stats = RequestStatsRecorder(app, settings.request_stats_flush_seconds, settings.instance_id)
    app.extensions["controlplane.request_stats"] = stats
    RequestTelemetry(app, provider, stats, DEFAULT_UNTRACED_PATHS)

    from .views import bp

    app.register_blueprint(bp)
    return provider
