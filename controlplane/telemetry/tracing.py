"""OpenTelemetry tracing: one TracerProvider per app, never the global one.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP) or when a test or benchmark
passes its own exporter; otherwise no provider exists and the request path skips tracing entirely.
The provider is per app (not global) so tests can build many apps in one process.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from ..version import VERSION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracing:
    provider: TracerProvider
    # The processors added to `provider`, also fed the request spans (see server_span.py).
    processors: tuple[SpanProcessor, ...]


def build_tracing(settings, exporter: SpanExporter | None = None,
                  processor: SpanProcessor | None = None) -> Tracing | None:
    """Export to `exporter` synchronously, through `processor`, or to OTLP when configured; else None."""
    if exporter is None and processor is None and not settings.otel_endpoint:
        return None
    resource = Resource.create({
        "service.name": settings.otel_service_name,
        "service.version": VERSION,
        "deployment.environment": settings.env,
        "service.instance.id": settings.instance_id,
    })
    provider = TracerProvider(resource=resource)
    if processor is None and exporter is not None:
        # Tests read spans right after the request, so export synchronously.
        processor = SimpleSpanProcessor(exporter)
    elif processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself.
        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    return Tracing(provider, (processor,))


def instrument_engine(engine, provider: TracerProvider | None) -> None:
    """Trace every SQL statement of this engine with this app's provider."""
    if provider is None:
        return
    # EngineTracer is what SQLAlchemyInstrumentor uses per engine; using it directly avoids the
    # instrumentor's process-wide patch of create_engine and its bind-once singleton.
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    unused_usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer, engine, unused_usage)


def instrument_http_client(client, provider: TracerProvider | None) -> None:
    if provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
