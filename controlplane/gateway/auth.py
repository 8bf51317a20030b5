"""Who is calling: an API key from X-Server-API-Key (as Postal) or Authorization: Bearer."""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app, g, request

from ..extensions import db
from ..timeutil import as_utc, utcnow
from .envelope import GatewayError
from .keys import find_key
from .users import ROLE_SCOPES, looks_like_jwt, user_from_token

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


@dataclass(frozen=True)
class UserPrincipal:
    """A signed-in user acting through a JWT: scopes come from the role; owns no messages."""

    user_id: int
    role: str
    id = None  # not an API key: ownership checks fall back to scopes

    @property
    def scope_set(self) -> frozenset[str]:
        return ROLE_SCOPES[self.role]


def authenticate(*scopes: str, allow_users: bool = False):
    """The caller (an API key, or a user's JWT where `allow_users`), holding one of `scopes`."""
    key = presented_key()
    if not key:
        raise GatewayError("AccessDenied", "Must be authenticated as a server.")
    settings = current_app.extensions["controlplane.settings"]
    if looks_like_jwt(key):
        return _authenticate_user(settings, key, scopes, allow_users)
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
    g.api_key = g.principal = row
    return row


def _authenticate_user(settings, token: str, scopes, allow_users: bool) -> UserPrincipal:
    if not allow_users:
        raise GatewayError("ApiKeyRequired", "This endpoint needs an API key, not a user token.", 403)
    user = user_from_token(settings, token)
    if user is None:
        raise GatewayError("InvalidToken", "The token is invalid or has expired; sign in again.", 401)
    principal = UserPrincipal(user.id, user.role)
    if not principal.scope_set & {*scopes, "admin"}:
        raise GatewayError("InsufficientScope", f"The {user.role} role may not do this.")
    g.user, g.principal = user, principal
    return principal


def requires(*scopes: str, allow_users: bool = False):
    """Route decorator: authenticate with any of `scopes` (admin holds every scope); users'
    JWTs are accepted only where `allow_users` (sending and webhooks belong to API keys)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            authenticate(*scopes, allow_users=allow_users)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def actor() -> str:
    if g.get("user") is not None:
        return f"user:{g.user.id}"
    key = g.get("api_key")
    return f"key:{key.id}" if key is not None else "anonymous"


def _ip_allowed(address: str | None, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n) for n in networks)
