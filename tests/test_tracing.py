import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


@pytest.fixture
def traced_app(make_app, exporter):
    app = make_app(span_exporter=exporter)

    @app.get("/work/<name>")
    def work(name):
        from sqlalchemy import text

        from controlplane.extensions import db

        db.session.execute(text("SELECT 1"))
        return {"name": name}

    return app


def test_requests_get_a_server_span_named_by_route_with_sql_children(traced_app, exporter):
    exporter.clear()
    response = traced_app.test_client().get("/work/abc")
    assert response.status_code == 200
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.kind == SpanKind.SERVER)
    assert server.name == "GET /work/<name>"
    assert server.attributes["http.route"] == "/work/<name>"
    assert server.attributes["http.response.status_code"] == 200
    sql = [s for s in spans if s.kind == SpanKind.CLIENT and "SELECT" in s.name]
    assert sql, [s.name for s in spans]
    assert sql[0].parent.span_id == server.context.span_id


def test_incoming_traceparent_is_continued(traced_app, exporter):
    exporter.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced_app.test_client().get("/work/x", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert format(server.context.trace_id, "032x") == trace_id


def test_probes_are_not_traced(traced_app, exporter):
    exporter.clear()
    client = traced_app.test_client()
    for path in ("/health", "/ready", "/live", "/metrics"):
        client.get(path)
    assert not [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]


def test_outbound_http_is_traced(traced_app, exporter):
    from controlplane.outbound import http_client
    from tests.doubles.postal import PostalDouble

    postal = PostalDouble().start()
    try:
        exporter.clear()
        with http_client(traced_app) as client:
            client.post(postal.url + "/api/v1/messages/message", json={"id": 1})
        assert [s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT]
        assert "traceparent" in {k.lower() for k in postal.requests[0]["headers"]}
    finally:
        postal.stop()


def test_no_exporter_and_no_endpoint_means_no_tracing(app):
    assert app.extensions["controlplane.tracer_provider"] is None


def test_request_id_is_echoed_or_generated(client):
    assert client.get("/live", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    generated = client.get("/live").headers["X-Request-Id"]
    assert len(generated) == 32
    hostile = client.get("/live", headers={"X-Request-Id": "bad id with spaces"}).headers["X-Request-Id"]
    assert hostile != "bad id with spaces" and len(hostile) == 32


def test_a_5xx_marks_the_server_span_as_an_error(traced_app, exporter):
    @traced_app.get("/fail")
    def fail():
        raise RuntimeError("boom")

    exporter.clear()
    assert traced_app.test_client().get("/fail").status_code == 500
    server = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER)
    assert server.status.status_code.name == "ERROR"
    assert server.attributes["http.response.status_code"] == 500
    assert server.resource.attributes["service.name"] == "mailgoat-controlplane"


def test_an_unsampled_parent_is_respected(traced_app, exporter):
    exporter.clear()
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    assert traced_app.test_client().get("/work/x", headers={"traceparent": parent}).status_code == 200
    assert not [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]


def test_request_span_records_exceptions_as_events(traced_app):
    from controlplane.telemetry.server_span import ServerSpans

    captured = []

    class Capture:
        def on_end(self, span):
            captured.append(span)

    provider = traced_app.extensions["controlplane.tracer_provider"]
    span = ServerSpans(provider, [Capture()]).start("GET", None, {"http.request.method": "GET"})
    span.record_exception(ValueError("bad"))
    span.end()
    span.end()  # ending twice reports once
    (finished,) = captured
    assert finished.events[0].name == "exception"
    assert finished.events[0].attributes["exception.type"] == "ValueError"
    assert finished.start_time <= finished.end_time
