"""/health, /ready and /live (CONTRACTS.md §6). All three answer from memory."""
import json
import time

from flask import Blueprint, current_app, jsonify

from ..telemetry.traffic import probe
from ..timeutil import isoformat
from ..version import VERSION
from .cache import overall_status, ready_problem

bp = Blueprint("health", __name__)


def _health():
    return current_app.extensions["controlplane.health"]


@bp.get("/health")
@probe
def health():
    state = _health()
    snapshot = state.cache.get()
    # Rendered at most once a second per snapshot: probes and load balancers poll this hard,
    # and ages and uptime are reported in whole or tenth seconds anyway.
    second = int(time.monotonic())
    rendered = state.rendered_health
    if rendered is None or rendered[0] is not snapshot or rendered[1] != second:
        rendered = state.rendered_health = (snapshot, second, *_render_health(state, snapshot))
    return current_app.response_class(rendered[2], status=rendered[3], mimetype="application/json")


def _render_health(state, snapshot) -> tuple[bytes, int]:
    view = snapshot.current(state.specs)
    status = overall_status(state.specs, view)
    body = {
        "status": status,
        "version": VERSION,
        "uptime": int(state.lifecycle.uptime_seconds),
        "checks": {name: result.status for name, result in view.items()},
        "details": {
            name: {
                "status": result.status,
                "observed_value": result.observed_value,
                "observed_unit": result.observed_unit,
                "duration_ms": result.duration_ms,
                "checked_at": isoformat(result.checked_at),
                "age_s": None if result.checked_at is None else round(result.age_s(), 1),
                "message": result.message,
            }
            for name, result in view.items()
        },
    }
    return json.dumps(body).encode(), 503 if status == "unhealthy" else 200


@bp.get("/ready")
@probe  # its 503s while starting or draining are answers to the proxy, never an outage
def ready():
    state = _health()
    if state.lifecycle.draining:
        return jsonify(ready=False, status="draining", reason="shutting down after SIGTERM"), 503
    problem = ready_problem(state.specs, state.cache.get().current(state.specs))
    if problem:
        status = "starting" if problem.startswith("initialising") else "unavailable"
        return jsonify(ready=False, status=status, reason=problem), 503
    return jsonify(ready=True, status="ready"), 200


@bp.get("/live")
@probe
def live():
    return jsonify(status="alive", uptime=int(_health().lifecycle.uptime_seconds)), 200
