"""/api/v1/deployments (admin): deploy start, success and failure, with version and commit."""
from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import select

from ..extensions import db
from ..timeutil import isoformat
from ..gateway.auth import requires
from ..gateway.envelope import GatewayError, failure, start_timer, success
from ..gateway.params import parse_int, request_params
from .deployments import DeploymentError, describe, record_deployment
from .models import Deployment

bp = Blueprint("deployments", __name__, url_prefix="/api/v1/deployments")
bp.before_request(start_timer)
bp.register_error_handler(GatewayError, failure)


@bp.post("")
@requires("admin", allow_users=True)
def create_or_finish():
    params = request_params()
    identifier = params.get("id")
    if identifier is not None and (not isinstance(identifier, int) or parse_int(identifier) is None):
        raise GatewayError("InvalidDeployment", "id must be the number a started deployment was given", 422)
    try:
        row = record_deployment(current_app.extensions["controlplane.settings"], params.get("kind", "deploy"),
                                params.get("status", "started"), params.get("version"), params.get("commit"),
                                params.get("detail"), identifier)
    except DeploymentError as exc:
        raise GatewayError("InvalidDeployment", str(exc), 422) from None
    return success(describe(row), status=201 if identifier is None else 200)


@bp.get("")
@requires("admin", allow_users=True)
def list_deployments():
    rows = db.session.execute(select(Deployment).order_by(Deployment.id.desc()).limit(50)).scalars()
    return success([describe(row) for row in rows])


silences_bp = Blueprint("silences", __name__, url_prefix="/api/v1")
silences_bp.before_request(start_timer)
silences_bp.register_error_handler(GatewayError, failure)


def _when(value, name: str):
    from ..timeutil import parse_iso

    if value in (None, ""):
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise GatewayError("InvalidSilence", f"{name} must be an ISO-8601 time", 422) from None


@silences_bp.get("/silences")
@requires("read", allow_users=True)
def list_silences():
    from .models import Silence
    from .silences import describe as describe_silence

    rows = db.session.execute(select(Silence).order_by(Silence.id.desc()).limit(100)).scalars()
    return success([describe_silence(row) for row in rows])


@silences_bp.post("/silences")
@requires("operate", allow_users=True)
def create_silence_view():
    from datetime import timedelta

    from ..gateway.auth import actor
    from .rules import RulesError, parse_duration
    from .silences import SilenceError, create_silence
    from .silences import describe as describe_silence

    params = request_params()
    try:
        duration = timedelta(seconds=parse_duration(params["duration"], "duration")) if params.get("duration") else None
        row = create_silence(params.get("matchers") or {}, _when(params.get("starts_at"), "starts_at"),
                             _when(params.get("ends_at"), "ends_at"), params.get("author") or actor(),
                             params.get("comment") or "", kind=params.get("kind", "silence")
                             if params.get("kind") in ("silence", "maintenance") else "silence", duration=duration)
    except (SilenceError, RulesError) as exc:
        raise GatewayError("InvalidSilence", str(exc), 422) from None
    return success(describe_silence(row), status=201)


@silences_bp.delete("/silences/<int:silence_id>")
@requires("operate", allow_users=True)
def expire_silence_view(silence_id: int):
    from .silences import SilenceError, expire_silence
    from .silences import describe as describe_silence

    try:
        row = expire_silence(silence_id)
    except SilenceError as exc:
        raise GatewayError("SilenceNotFound", str(exc), 404) from None
    return success(describe_silence(row))


@silences_bp.get("/alerts")
@requires("read", allow_users=True)
def list_alerts():
    from .engine import current_states

    return success(current_states(current_app.extensions["controlplane.alert_rules"]))


@silences_bp.get("/alerts/history")
@requires("read", allow_users=True)
def alert_history():
    from .models import AlertEvent

    rows = db.session.execute(select(AlertEvent).order_by(AlertEvent.id.desc()).limit(200)).scalars()
    return success([{"rule": e.rule, "transition": e.transition, "value": e.value, "at": isoformat(e.at),
                     "detail": e.detail} for e in rows])
