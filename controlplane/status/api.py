"""/api/v1/incidents: create, update, resolve and annotate incidents (operator role or admin)."""
from __future__ import annotations

from flask import Blueprint, current_app

from ..gateway.auth import actor, requires
from ..gateway.envelope import GatewayError, failure, start_timer, success
from ..gateway.params import request_params
from .cache import clear_after_write
from .incidents import IncidentError, create_incident, describe_for_operators, set_postmortem, update_incident

bp = Blueprint("incidents", __name__, url_prefix="/api/v1/incidents")
bp.before_request(start_timer)
bp.after_request(clear_after_write)
bp.register_error_handler(GatewayError, failure)


def _context():
    from .views import current_statuses

    statuses, _ = current_statuses()
    return current_app.extensions["controlplane.health"].config, {s.id: s.status for s in statuses}


def _page_id() -> str:
    return current_app.extensions["controlplane.settings"].status_page_id


@bp.post("")
@requires("operate", allow_users=True)
def create():
    params = request_params()
    config, current = _context()
    try:
        incident = create_incident(config, current, params.get("name"), params.get("status", "investigating"),
                                   params.get("body"), params.get("impact"), params.get("components"), author=actor())
    except IncidentError as exc:
        raise exc.for_api("Incident") from None
    return success(describe_for_operators(incident, _page_id()), status=201)


@bp.post("/<int:incident_id>/updates")
@requires("operate", allow_users=True)
def add_update(incident_id: int):
    params = request_params()
    config, current = _context()
    try:
        incident = update_incident(config, current, incident_id, params.get("status"), params.get("body"),
                                   params.get("components"), author=actor())
    except IncidentError as exc:
        raise exc.for_api("Incident") from None
    return success(describe_for_operators(incident, _page_id()))


@bp.put("/<int:incident_id>/postmortem")
@requires("operate", allow_users=True)
def postmortem(incident_id: int):
    try:
        incident = set_postmortem(incident_id, request_params().get("body"))
    except IncidentError as exc:
        raise exc.for_api("Incident") from None
    return success(describe_for_operators(incident, _page_id()))


maintenances = Blueprint("maintenances", __name__, url_prefix="/api/v1/maintenances")
maintenances.before_request(start_timer)
maintenances.after_request(clear_after_write)
maintenances.register_error_handler(GatewayError, failure)


def _moment(value, name: str):
    from ..timeutil import parse_iso

    if value in (None, ""):
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise GatewayError("InvalidMaintenance", f"{name} must be an ISO-8601 time", 422) from None


@maintenances.post("")
@requires("operate", allow_users=True)
def schedule_maintenance():
    from ..timeutil import utcnow
    from .maintenance import describe as describe_maintenance
    from .maintenance import schedule

    params = request_params()
    config = current_app.extensions["controlplane.health"].config
    try:
        row = schedule(config, params.get("name"), params.get("body"), params.get("components"),
                       _moment(params.get("scheduled_for"), "scheduled_for"),
                       _moment(params.get("scheduled_until"), "scheduled_until"), actor())
    except IncidentError as exc:
        raise exc.for_api("Maintenance") from None
    return success(describe_maintenance(row, config, _page_id(), utcnow()), status=201)


@maintenances.delete("/<int:maintenance_id>")
@requires("operate", allow_users=True)
def cancel_maintenance(maintenance_id: int):
    from ..timeutil import utcnow
    from .maintenance import cancel
    from .maintenance import describe as describe_maintenance

    try:
        row = cancel(maintenance_id)
    except IncidentError as exc:
        raise exc.for_api("Maintenance") from None
    return success(describe_maintenance(row, current_app.extensions["controlplane.health"].config, _page_id(),
                                        utcnow()))


subscribers = Blueprint("status_subscribers", __name__, url_prefix="/api/v1/subscribers")
subscribers.before_request(start_timer)
subscribers.register_error_handler(GatewayError, failure)


@subscribers.get("")
@requires("operate", allow_users=True)
def list_subscribers():
    from .subscribers import describe as describe_subscriber
    from .subscribers import listing

    return success([describe_subscriber(row) for row in listing()])


@subscribers.post("")
@requires("operate", allow_users=True)
def add_subscriber():
    """{"url": ..., "secret"?: ...} adds a webhook; {"email": ...} starts an email double opt-in."""
    from .subscribers import add_webhook, subscribe_email
    from .subscribers import describe as describe_subscriber

    params = request_params()
    settings = current_app.extensions["controlplane.settings"]
    try:
        if params.get("url") is not None:
            row = add_webhook(settings, params.get("url"), params.get("secret"))
            return success({**describe_subscriber(row), "secret": row.secret}, status=201)
        return success(describe_subscriber(subscribe_email(settings, params.get("email")).subscriber), status=202)
    except IncidentError as exc:
        raise exc.for_api("Subscriber") from None


@subscribers.delete("/<int:subscriber_id>")
@requires("operate", allow_users=True)
def remove_subscriber(subscriber_id: int):
    from .subscribers import describe as describe_subscriber
    from .subscribers import remove

    try:
        return success(describe_subscriber(remove(subscriber_id)))
    except IncidentError as exc:
        raise exc.for_api("Subscriber") from None
