"""JSON-lines logs carrying the request id and trace id of whatever is being served."""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import traceback

from opentelemetry import trace

from ..timeutil import isoformat, utcnow

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (pytest and gunicorn both swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": isoformat(utcnow()),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """One JSON handler on the root logger; idempotent, so building several apps is safe."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_controlplane", False)), None)
    if handler is None:
        handler = _StderrHandler()
        handler._controlplane = True
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter())
    root.setLevel(level)
    # Library chatter stays at WARNING even when we log DEBUG.
    for noisy in ("urllib3", "httpx", "httpcore", "apscheduler", "alembic", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
