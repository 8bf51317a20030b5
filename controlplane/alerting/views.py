"""/api/v1/deployments (admin): deploy start, success and failure, with version and commit."""
from __future__ import annotations

from flask import Blueprint, current_app
from sqlalchemy import select

from ..extensions import db
from ..gateway.auth import requires
from ..gateway.envelope import GatewayError, failure, start_timer, success
from ..gateway.params import request_params
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
    if identifier is not None and (isinstance(identifier, bool) or not isinstance(identifier, int)):
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
