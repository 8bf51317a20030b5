"""Who is calling: an API key from X-Server-API-Key (as Postal) or Authorization: Bearer."""
from __future__ import annotations

import functools
import ipaddress
from datetime import timedelta

from flask import current_app, g, request

from ..extensions import db
from ..timeutil import as_utc, utcnow
from .envelope import GatewayError
from .keys import find_key
from .models import ApiKey

# last_used_at is written at most this often per key, so reads do not turn into writes.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def presented_key() -> str | None:
    key = request.headers.get("X-Server-API-Key")
    if key:
        return key.strip()
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def authenticate(*scopes: str) -> ApiKey:
    """The calling key, which must hold one of `scopes` (admin holds them all)."""
    key = presented_key()
    if not key:
        raise GatewayError("AccessDenied", "Must be authenticated as a server.")
    settings = current_app.extensions["controlplane.settings"]
    row = find_key(settings, key)
    if row is None or row.revoked_at is not None:
        raise GatewayError("InvalidServerAPIKey", "The API token provided in X-Server-API-Key was not valid.")
    if row.ip_networks and not _ip_allowed(request.remote_addr, row.ip_networks):
        raise GatewayError("IpNotAllowed", f"This key may not be used from {request.remote_addr}.")
    if not row.scope_set & {*scopes, "admin"}:
        raise GatewayError("InsufficientScope", f"This key lacks the '{' or '.join(scopes)}' scope.")
    now = utcnow()
    if row.last_used_at is None or now - as_utc(row.last_used_at) >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        db.session.commit()
    g.api_key = row
    return row


def requires(*scopes: str):
    """Route decorator: authenticate with any of `scopes` (admin keys hold every scope)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            authenticate(*scopes)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def actor() -> str:
    key = g.get("api_key")
    return f"key:{key.id}" if key is not None else "anonymous"


def _ip_allowed(address: str | None, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n) for n in networks)
