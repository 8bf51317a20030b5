"""The MailGoat API routes (CONTRACTS.md §1-2)."""
from __future__ import annotations

import functools
import json

from flask import Blueprint, current_app, g, request
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy import select

from ..extensions import db
from ..timeutil import isoformat, utcnow
from .auth import actor, requires
from .envelope import GatewayError, failure, start_timer, success
from .limits import check_quota, login_limit, rate_headers, rate_limited, send_limit
from .keys import KeyError_, audit, create_key, describe_key, revoke_key
from .models import ApiKey, User
from .params import parse_int, request_params
from .reading import POSTAL_ONLY, find_message, find_message_for_postal, flat, postal_view, requested_expansions
from .schemas import declared_params, declared_query
from .sending import accept, idempotency_key, normalise_message, normalise_raw

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
@requires("admin", allow_users=True)
def create_credential():
    declared = declared_params(request_params())
    new = create_key(
        current_app.extensions["controlplane.settings"],
        name=declared.name, scopes=declared.scopes, allowed_from_domains=declared.allowed_from_domains,
        default_sender=declared.default_sender, allowed_ips=declared.allowed_ips,
        rate_limits=declared.rate_limits.model_dump() if declared.rate_limits else None,
        monthly_quota=declared.monthly_quota, actor=actor(), source_ip=request.remote_addr,
    )
    # The key is in this response and nowhere else, ever.
    return success({**describe_key(new.row), "key": new.key}, status=201)


@bp.get("/credentials")
@requires("admin", allow_users=True)
def list_credentials():
    # Clients treat every listed key as usable: revoked ones only when asked for.
    query = select(ApiKey).order_by(ApiKey.id)
    if request.args.get("include_revoked", "").lower() not in ("true", "1", "yes"):
        query = query.where(ApiKey.revoked_at.is_(None))
    return success([describe_key(row) for row in db.session.execute(query).scalars()])


@bp.delete("/credentials/<key_id>")
@requires("admin", allow_users=True)
def delete_credential(key_id: str):
    number = parse_int(key_id)
    if number is None or number < 1:
        raise GatewayError("CredentialNotFound", f"No credential with id {key_id}", 404)
    return success(describe_key(revoke_key(number, actor=actor(), source_ip=request.remote_addr)))


@bp.errorhandler(RateLimitExceeded)
def limit_reached(exc: RateLimitExceeded):
    return failure(rate_limited(exc))


def _send(kind: str):
    params = request_params()
    key = g.api_key
    settings = current_app.extensions["controlplane.settings"]
    check_quota(settings, key)
    declared = declared_params(params)
    if kind == "message":
        normalised = normalise_message(declared, key, settings.max_attachment_bytes)
    else:
        normalised = normalise_raw(declared)
    data = accept(key, kind, normalised, declared.send_at,
                  idempotency_key(params, request.headers.get("Idempotency-Key")), refuse_changed_repeat=True)
    # Clients read the id at data.message_id (Node CLI, Action) or top-level message_id (Python SDK).
    response = success(data, message_id=data["message_id"])
    response.headers.update(rate_headers())
    return response


@bp.route("/send/message", methods=POSTAL_METHODS)
@requires("send")
@send_limit
def send_message():
    return _send("message")


# The published 1.0.0b1 Python SDK posts its form here.
bp.add_url_rule("/messages/send", "send_message_alias", send_message, methods=["POST"])


@bp.route("/send/raw", methods=POSTAL_METHODS)
@requires("send")
@send_limit
def send_raw():
    return _send("raw")


@bp.get("/messages/<path:identifier>")
@requires("send", "read", allow_users=True)
def get_message(identifier: str):
    message, _ = find_message(identifier, g.principal)
    shown = flat(message)
    # The Python SDK reads this flat; envelope readers find the same object under `data`.
    return {**shown, "data": shown}


def _postal():
    """The Postal client for read-through calls (None when unconfigured)."""
    return current_app.extensions["controlplane.postal"]


def _ask_postal(path: str, params: dict):
    from ..postal import PostalRejected, PostalUnavailable

    client = _postal()
    if client is None or getattr(client, "name", "") != "http":
        return None
    try:
        return client.call(path, params)
    except PostalUnavailable as exc:
        raise GatewayError("UpstreamUnavailable", f"Postal is unavailable: {exc}", 503) from None
    except PostalRejected as exc:
        raise GatewayError(exc.code, exc.message, 502 if exc.code != "MessageNotFound" else 404) from None


@bp.route("/messages/message", methods=POSTAL_METHODS)
@requires("send", "read", allow_users=True)
def postal_message():
    declared = declared_params(request_params())
    message, recipient = find_message_for_postal(declared.id, g.principal)
    expansions = requested_expansions(declared.expansions)
    view = postal_view(message, recipient, expansions)
    wanted_from_postal = [e for e in expansions if e in POSTAL_ONLY]
    postal_id = recipient.postal_id
    if wanted_from_postal and postal_id:
        upstream = _ask_postal("/api/v1/messages/message", {"id": postal_id, "_expansions": wanted_from_postal})
        for name in wanted_from_postal:
            if upstream and name in upstream:
                view[name] = upstream[name]
    return success(view)


@bp.route("/messages/deliveries", methods=POSTAL_METHODS)
@requires("send", "read", allow_users=True)
def postal_deliveries():
    declared = declared_params(request_params())
    message, recipient = find_message_for_postal(declared.id, g.principal)
    postal_id = recipient.postal_id
    # Delivery attempts to remote servers are known only to Postal.
    deliveries = _ask_postal("/api/v1/messages/deliveries", {"id": postal_id}) if postal_id else None
    return success(deliveries or [])


CANCELLABLE = ("queued", "scheduled", "retrying")


@bp.post("/messages/delete")
@requires("send")
def delete_message():
    from sqlalchemy import update

    from ..timeutil import utcnow
    from .models import Message

    declared = declared_params(request_params())
    message, _ = find_message(declared.id, g.api_key)
    # A conditional update, so a worker claiming the row at this moment cannot also send it.
    cancelled = db.session.execute(
        update(Message).where(Message.id == message.id, Message.state.in_(CANCELLABLE))
        .values(state="cancelled", updated_at=utcnow(), next_attempt_at=None)
    ).rowcount
    db.session.commit()
    if not cancelled:
        db.session.refresh(message)
        raise GatewayError("MessageNotCancellable",
                           f"Message is {message.state}; only queued, scheduled or retrying messages can be cancelled",
                           409, extra={"message_id": message.message_id, "state": message.state})
    return success({"success": True, "message_id": message.message_id}, success=True, message_id=message.message_id)


@bp.get("/messages")
@requires("send", "read", allow_users=True)
def list_messages():
    from .listing import list_page

    page = list_page(g.principal, declared_query())
    return success(page)


@bp.post("/auth/login")
@login_limit
def login():
    from .users import check_password, issue_token

    settings = current_app.extensions["controlplane.settings"]
    declared = declared_params(request_params())
    email, password = declared.email, declared.password
    user = db.session.execute(select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    # Hash even for an unknown email, so timing does not reveal which emails exist.
    valid = check_password(password, user.password_hash if user else _dummy_hash()) and user is not None
    if not valid or user.disabled_at is not None:
        audit("anonymous", "user.login_failed", f"email:{email[:150]}", request.remote_addr, None)  # target is 160
        db.session.commit()
        raise GatewayError("InvalidCredentials", "Email or password is incorrect.", 401)
    token, expires = issue_token(settings, user)
    user.last_login_at = utcnow()
    audit(f"user:{user.id}", "user.login", f"user:{user.id}", request.remote_addr, None)
    db.session.commit()
    return success({"token": token, "token_type": "Bearer", "expires_at": expires,
                    "user": {"id": user.id, "email": user.email, "role": user.role}})


@functools.cache
def _dummy_hash() -> str:
    from .users import hash_password

    return hash_password("not-a-real-password")


@bp.get("/usage")
@requires("send", "read", allow_users=True)
def usage():
    from .usage import usage_report

    return success(usage_report(g.principal, declared_query()))


@bp.get("/inbound")
@requires("read", allow_users=True)
def list_inbound():
    from .models import InboundMessage

    rows = db.session.execute(select(InboundMessage).order_by(InboundMessage.id.desc()).limit(100)).scalars()
    return success([_inbound_view(r, full=False) for r in rows])


@bp.get("/inbound/<int:inbound_id>")
@requires("read", allow_users=True)
def get_inbound(inbound_id: int):
    from .models import InboundMessage

    row = db.session.get(InboundMessage, inbound_id)
    if row is None:
        raise GatewayError("InboundNotFound", f"No inbound message with id {inbound_id}", 404)
    return success(_inbound_view(row, full=True))


def _inbound_view(row, full: bool) -> dict:
    view = {"id": row.id, "postal_id": row.postal_id, "format": row.format, "rcpt_to": row.rcpt_to,
            "mail_from": row.mail_from, "subject": row.subject, "received_at": isoformat(row.received_at)}
    if full:
        view["message"] = json.loads(row.payload)
    return view


@bp.get("/openapi.json")
def openapi():
    from .openapi import document

    return document()
