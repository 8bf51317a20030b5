"""The MailGoat API routes (CONTRACTS.md §1-2)."""
from __future__ import annotations

from flask import Blueprint, current_app, g, request
from sqlalchemy import select

from ..extensions import db
from .auth import actor, requires
from .envelope import GatewayError, failure, start_timer, success
from .keys import KeyError_, create_key, describe_key, revoke_key
from .models import ApiKey
from .params import request_params
from .reading import find_message, flat
from .sending import accept, idempotency_key, parse_send_at, validate_message, validate_raw

POSTAL_METHODS = ["GET", "POST", "PATCH", "PUT"]

bp = Blueprint("gateway", __name__, url_prefix="/api/v1")
bp.before_request(start_timer)


@bp.errorhandler(GatewayError)
def gateway_error(exc: GatewayError):
    return failure(exc)


@bp.errorhandler(KeyError_)
def key_error(exc: KeyError_):
    status = 404 if exc.code == "CredentialNotFound" else 422
    return failure(GatewayError(exc.code, str(exc), status))


@bp.post("/credentials")
@requires("admin")
def create_credential():
    params = request_params()
    new = create_key(
        current_app.extensions["controlplane.settings"],
        name=params.get("name"), scopes=params.get("scopes", ["send"]),
        allowed_from_domains=params.get("allowed_from_domains"), default_sender=params.get("default_sender"),
        allowed_ips=params.get("allowed_ips"), actor=actor(), source_ip=request.remote_addr,
    )
    # The key is in this response and nowhere else, ever.
    return success({**describe_key(new.row), "key": new.key}, status=201)


@bp.get("/credentials")
@requires("admin")
def list_credentials():
    rows = db.session.execute(select(ApiKey).order_by(ApiKey.id)).scalars()
    return success([describe_key(row) for row in rows])


@bp.delete("/credentials/<int:key_id>")
@requires("admin")
def delete_credential(key_id: int):
    row = revoke_key(key_id, actor=actor(), source_ip=request.remote_addr)
    return success({**describe_key(row), "revoked": True})


def _send(kind: str):
    params = request_params()
    key = g.api_key
    settings = current_app.extensions["controlplane.settings"]
    if kind == "message":
        normalised = validate_message(params, key, settings.max_attachment_bytes)
    else:
        normalised = validate_raw(params)
    data = accept(key, kind, normalised, parse_send_at(params.get("send_at")),
                  idempotency_key(params, request.headers.get("Idempotency-Key")))
    # Clients read the id at data.message_id (Node CLI, Action) or top-level message_id (Python SDK).
    return success(data, message_id=data["message_id"])


@bp.route("/send/message", methods=POSTAL_METHODS)
@requires("send")
def send_message():
    return _send("message")


# The published 1.0.0b1 Python SDK posts its form here.
bp.add_url_rule("/messages/send", "send_message_alias", send_message, methods=["POST"])


@bp.route("/send/raw", methods=POSTAL_METHODS)
@requires("send")
def send_raw():
    return _send("raw")


@bp.get("/messages/<path:identifier>")
@requires("send", "read")
def get_message(identifier: str):
    message, _ = find_message(identifier, g.api_key)
    shown = flat(message)
    # The Python SDK reads this flat; envelope readers find the same object under `data`.
    return {**shown, "data": shown}
