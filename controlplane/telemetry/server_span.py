"""The per-request server span, made cheaply.

The SDK's generic `Span` allocates four locks, two bounded containers and a full copy
(`ReadableSpan`) at `end()`; at one span per request that was most of our telemetry overhead.
A request's server span is only ever touched by the thread serving it, so `RequestSpan` keeps
plain fields and, at `end()`, builds the one `ReadableSpan` the span processors need.

Everything else is the SDK's own: the provider's sampler decides, its id generator makes the ids,
its resource is attached, and the same span processors (batch or simple) export the result, so
exporters, OTLP and tests see ordinary SDK spans. Child spans (SQL, outbound HTTP) are ordinary
SDK spans whose parent is this one.
"""
from __future__ import annotations

import traceback
from time import time_ns

from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..version import VERSION

SCOPE = InstrumentationScope("controlplane.requests", VERSION)


class ServerSpans:
    """Starts request spans with a provider's sampler and ids; hands finished ones to `processors`.

    `processors` must be span processors whose `on_start` does nothing (the SDK's batch and
    simple processors): a request span is reported only when it ends.
    """

    def __init__(self, provider: TracerProvider, processors: list[SpanProcessor]):
        self.sampler = provider.sampler
        self.ids = provider.id_generator
        self.resource = provider.resource
        self.processors = tuple(processors)

    def start(self, name: str, parent_context, attributes: dict) -> trace.Span:
        parent = trace.get_current_span(parent_context).get_span_context() if parent_context else None
        if parent is not None and not parent.is_valid:
            parent = None
        trace_id = parent.trace_id if parent is not None else self.ids.generate_trace_id()
        decision = self.sampler.should_sample(parent_context, trace_id, name, SpanKind.SERVER, attributes)
        flags = TraceFlags(TraceFlags.SAMPLED if decision.decision.is_sampled() else TraceFlags.DEFAULT)
        context = SpanContext(trace_id, self.ids.generate_span_id(), is_remote=False, trace_flags=flags,
                              trace_state=decision.trace_state)
        if not decision.decision.is_recording():
            return NonRecordingSpan(context)
        return RequestSpan(self, name, context, parent, {**attributes, **(decision.attributes or {})})

    def finish(self, span: ReadableSpan) -> None:
        for processor in self.processors:
            processor.on_end(span)


class RequestSpan(trace.Span):
    def __init__(self, spans: ServerSpans, name: str, context: SpanContext, parent: SpanContext | None,
                 attributes: dict):
        self._spans = spans
        self._name = name
        self._context = context
        self._parent = parent
        self._attributes = attributes
        self._events: list[Event] = []
        self._status = Status(StatusCode.UNSET)
        self._start = time_ns()
        self._ended = False

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def update_name(self, name: str) -> None:
        self._name = name

    def set_attribute(self, key: str, value) -> None:
        self._attributes[key] = value

    def set_attributes(self, attributes) -> None:
        self._attributes.update(attributes)

    def add_event(self, name: str, attributes=None, timestamp: int | None = None) -> None:
        self._events.append(Event(name, attributes, timestamp or time_ns()))

    def add_link(self, context, attributes=None) -> None:
        """Links are not used on request spans; accepted and dropped."""

    def set_status(self, status, description: str | None = None) -> None:
        self._status = status if isinstance(status, Status) else Status(status, description)

    def record_exception(self, exception: BaseException, attributes=None, timestamp=None, escaped=False) -> None:
        self.add_event("exception", {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": escaped,
            **(attributes or {}),
        }, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._spans.finish(ReadableSpan(
            name=self._name, context=self._context, parent=self._parent, resource=self._spans.resource,
            attributes=self._attributes, events=tuple(self._events), kind=SpanKind.SERVER,
            status=self._status, start_time=self._start, end_time=end_time or time_ns(),
            instrumentation_scope=SCOPE,
        ))
