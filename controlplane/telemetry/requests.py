"""Per-request telemetry: request id, latency histogram, shared stats and one server span.

Probe and scrape routes (traffic.py) get their own histogram, no shared stats and no span: they
are not user traffic and must never page.

This runs on every request, so it is a WSGI middleware rather than three Flask hooks (each Flask
hook costs a coroutine check and several context-local lookups per request) and does the least
work that gives useful telemetry: a dict lookup for the histogram child, a tally for
`request_stats`, and one SDK span only when tracing is on and the path is not excluded. The route
label is Flask's URL rule template, which `RouteRecordingRequest` leaves in the environ.
"""
from __future__ import annotations

import random
import re
from time import perf_counter

from flask import Request
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from .logging import request_id_var
from .metrics import PROBE_DURATION, REQUEST_DURATION, REQUESTS_IN_FLIGHT
from .traffic import ProbeRoutes

UNMATCHED_ROUTE = "<unmatched>"
REQUEST_ID_HEADER = "X-Request-Id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


class _EnvironGetter:
    """Reads propagation headers (traceparent, tracestate, baggage) straight from the WSGI environ."""

    def get(self, environ, key):
        value = environ.get("HTTP_" + key.upper().replace("-", "_"))
        return None if value is None else [value]

    def keys(self, environ):
        return [k[5:].lower().replace("_", "-") for k in environ if k.startswith("HTTP_")]


_GETTER = _EnvironGetter()


ROUTE_KEY = "controlplane.route"


class RouteRecordingRequest(Request):
    """Flask's request, leaving the matched URL rule's template in the WSGI environ.

    Flask tears the request down before the middleware's `finally` runs; a plain string in the
    environ survives that and holds no reference back to the request.
    """

    _url_rule = None

    @property
    def url_rule(self):
        return self._url_rule

    @url_rule.setter
    def url_rule(self, rule) -> None:
        self._url_rule = rule
        if rule is not None:
            self.environ[ROUTE_KEY] = rule.rule


def route_of(environ) -> str:
    return environ.get(ROUTE_KEY, UNMATCHED_ROUTE)


class RequestTelemetry:
    """WSGI middleware around Flask's wsgi_app."""

    def __init__(self, wsgi_app, server_spans, stats_recorder, probes: ProbeRoutes):
        self.wsgi_app = wsgi_app
        self.server_spans = server_spans
        self.stats = stats_recorder
        self.probes = probes
        # (method, route, status) -> (histogram child, whether the route is a probe)
        self._histograms: dict[tuple[str, str, str], tuple[object, bool]] = {}

    def __call__(self, environ, start_response):
        started = perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID")
        # random, not os.urandom: a request id needs no secrecy, and the syscall costs ~25 µs here.
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else f"{random.getrandbits(128):032x}"
        id_token = request_id_var.set(request_id)
        REQUESTS_IN_FLIGHT.inc()
        method = environ.get("REQUEST_METHOD", "GET")
        span = span_token = None
        if self.server_spans is not None and not self.probes.is_probe_path(environ.get("PATH_INFO", "")):
            parent = propagate.extract(environ, getter=_GETTER) if "HTTP_TRACEPARENT" in environ else None
            span = self.server_spans.start(method, parent, {"http.request.method": method})
            span_token = otel_context.attach(trace.set_span_in_context(span))
        status_code = 500

        def start_with_request_id(status, headers, exc_info=None):
            nonlocal status_code
            status_code = int(status[:3])
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, start_with_request_id)
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            seconds = perf_counter() - started
            route = route_of(environ)
            key = (method, route, str(status_code))
            known = self._histograms.get(key)
            if known is None:
                is_probe = route in self.probes.routes
                known = self._histograms[key] = ((PROBE_DURATION if is_probe else REQUEST_DURATION).labels(*key),
                                                 is_probe)
            child, is_probe = known
            child.observe(seconds)
            if not is_probe:
                self.stats.record(route, method, status_code, seconds)
            REQUESTS_IN_FLIGHT.dec()
            if span is not None:
                span.update_name(f"{method} {route}")
                # Few attributes on purpose: each costs validation on the hot path; the trace id
                # in the logs links a span to its request id and path.
                span.set_attributes({"http.route": route, "http.response.status_code": status_code})
                if status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
                otel_context.detach(span_token)
            request_id_var.reset(id_token)
