"""Per-request telemetry: request id, latency histogram, shared stats and one server span.

This runs on every request, so it is deliberately thin: a dict lookup for the histogram child,
one SDK span (only when tracing is on and the path is not excluded) and a tally for
`request_stats`. The stock Flask instrumentation does several times more work per request.
"""
from __future__ import annotations

import re
import uuid
from time import perf_counter

from flask import Flask, request
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .logging import request_id_var
from .metrics import REQUEST_DURATION, REQUESTS_IN_FLIGHT

UNMATCHED_ROUTE = "<unmatched>"
REQUEST_ID_HEADER = "X-Request-Id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_STATE = "controlplane.telemetry"


class _RequestState:
    __slots__ = ("started", "request_id", "id_token", "span", "span_token")

    def __init__(self, started: float, request_id: str, id_token):
        self.started = started
        self.request_id = request_id
        self.id_token = id_token
        self.span = None
        self.span_token = None


class RequestTelemetry:
    def __init__(self, app: Flask, tracer_provider, stats_recorder, excluded_paths: frozenset[str]):
        self.tracer = tracer_provider.get_tracer("controlplane") if tracer_provider else None
        self.stats = stats_recorder
        self.excluded_paths = excluded_paths
        self._histograms: dict[tuple[str, str, str], object] = {}
        app.before_request(self.before)
        app.after_request(self.after)
        app.teardown_request(self.teardown)

    def before(self) -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER)
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        state = _RequestState(perf_counter(), request_id, request_id_var.set(request_id))
        request.environ[_STATE] = state
        REQUESTS_IN_FLIGHT.inc()
        if self.tracer is not None and request.path not in self.excluded_paths:
            route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
            span = self.tracer.start_span(
                f"{request.method} {route}",
                context=propagate.extract(request.headers),
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": request.method,
                    "http.route": route,
                    "url.path": request.path,
                    "url.scheme": request.scheme,
                    "http.request.id": request_id,
                },
            )
            state.span = span
            state.span_token = otel_context.attach(trace.set_span_in_context(span))

    def after(self, response):
        state: _RequestState | None = request.environ.get(_STATE)
        if state is None:
            return response
        seconds = perf_counter() - state.started
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        status = response.status_code
        key = (request.method, route, str(status))
        child = self._histograms.get(key)
        if child is None:
            child = self._histograms[key] = REQUEST_DURATION.labels(*key)
        child.observe(seconds)
        self.stats.record(route, request.method, status, seconds)
        response.headers[REQUEST_ID_HEADER] = state.request_id
        if state.span is not None:
            state.span.set_attribute("http.response.status_code", status)
            if status >= 500:
                state.span.set_status(Status(StatusCode.ERROR))
        return response

    def teardown(self, exc) -> None:
        state: _RequestState | None = request.environ.pop(_STATE, None)
        if state is None:
            return
        REQUESTS_IN_FLIGHT.dec()
        if state.span is not None:
            if exc is not None:
                state.span.record_exception(exc)
                state.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            state.span.end()
            otel_context.detach(state.span_token)
        request_id_var.reset(state.id_token)


def current_request_id() -> str | None:
    return request_id_var.get()
