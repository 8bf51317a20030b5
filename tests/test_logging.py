import json
import logging

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def test_logs_are_json_lines_with_request_and_trace_ids(make_app, capsys):
    exporter = InMemorySpanExporter()
    app = make_app(span_exporter=exporter)

    @app.get("/hello")
    def hello():
        logging.getLogger("controlplane.test").warning("hello from a request", extra={"user": "ops"})
        return {}

    capsys.readouterr()
    app.test_client().get("/hello", headers={"X-Request-Id": "req-42"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    entry = next(line for line in lines if line["message"] == "hello from a request")
    assert entry["level"] == "WARNING" and entry["logger"] == "controlplane.test"
    assert entry["request_id"] == "req-42"
    span = exporter.get_finished_spans()[-1]
    assert entry["trace_id"] == format(span.context.trace_id, "032x")
    assert entry["user"] == "ops"


def test_production_logs_warnings_and_errors_only(make_app):
    make_app(APP_ENV="production", JWT_SECRET="j" * 40, API_KEY_SALT="s" * 40, BACKUP_ENCRYPTION_KEY="ab" * 32, LOG_LEVEL="",
             ALLOW_DEVELOPMENT_SETTINGS="sqlite,local-backups")  # the suite's database and a temporary directory
    assert logging.getLogger().level == logging.WARNING


def test_development_logs_debug(make_app):
    make_app(LOG_LEVEL="")
    assert logging.getLogger().level == logging.DEBUG
