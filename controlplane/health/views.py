"""/health, /ready and /live (CONTRACTS.md §6). All three answer from memory."""
from flask import Blueprint, current_app, jsonify

from ..timeutil import isoformat
from ..version import VERSION
from .cache import overall_status, ready_problem

bp = Blueprint("health", __name__)


def _health():
    return current_app.extensions["controlplane.health"]


@bp.get("/health")
def health():
    state = _health()
    view = state.cache.get().current(state.specs)
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
    return jsonify(body), 503 if status == "unhealthy" else 200


@bp.get("/ready")
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
def live():
    return jsonify(status="alive", uptime=int(_health().lifecycle.uptime_seconds)), 200
