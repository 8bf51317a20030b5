"""API keys: made, hashed, found, revoked and rotated. Only HMACs are ever stored."""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select

from ..extensions import db
from ..timeutil import utcnow
from .models import SCOPES, ApiKey, AuditEntry
from .params import INTEGER_MAX

KEY_PREFIX = "mg_"
KEY_ALPHABET = string.ascii_letters + string.digits
KEY_BODY_LENGTH = 32
VISIBLE_CHARACTERS = 8


class KeyError_(ValueError):
    """A key request is invalid; `code` and the message are shown to the caller."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def salt_id(salt: str) -> str:
    return hashlib.sha256(salt.encode()).hexdigest()[:16]


def hash_key(salt: str, key: str) -> str:
    return hmac.new(salt.encode(), key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    key: str  # shown once, never stored


def validate_scopes(scopes) -> list[str]:
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise KeyError_("InvalidScopes", f"scopes must be a non-empty list drawn from {', '.join(SCOPES)}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise KeyError_("InvalidScopes", f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return sorted(set(scopes), key=SCOPES.index)


def validate_networks(networks) -> list[str]:
    networks = networks or []
    if isinstance(networks, str):
        networks = [n.strip() for n in networks.split(",") if n.strip()]
    try:
        return [str(ipaddress.ip_network(n, strict=False)) for n in networks]
    except (ValueError, TypeError) as exc:
        raise KeyError_("InvalidAllowedIps", f"allowed_ips must be CIDR networks: {exc}") from None


def validate_domains(domains) -> list[str]:
    domains = domains or []
    if isinstance(domains, str):
        domains = [d.strip() for d in domains.split(",") if d.strip()]
    if not all(isinstance(d, str) and "." in d and "@" not in d for d in domains):
        raise KeyError_("InvalidFromDomains", "allowed_from_domains must be domain names such as example.com")
    return [d.lower() for d in domains]


def create_key(settings, *, name: str, scopes, allowed_from_domains=None, default_sender=None,
               allowed_ips=None, rate_limits=None, monthly_quota=None, actor: str,
               source_ip: str | None = None) -> NewKey:
    if not isinstance(name, str) or not name.strip() or len(name) > 120:
        raise KeyError_("InvalidName", "name is required (at most 120 characters)")
    if default_sender is not None and (not isinstance(default_sender, str) or "@" not in default_sender):
        raise KeyError_("InvalidDefaultSender", "default_sender must be an email address")
    if rate_limits is not None and not isinstance(rate_limits, dict):
        raise KeyError_("InvalidLimits", "rate_limits must be an object with burst, hour and/or today")
    key = KEY_PREFIX + "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_BODY_LENGTH))
    row = ApiKey(
        name=name.strip(), prefix=key[: len(KEY_PREFIX) + VISIBLE_CHARACTERS],
        key_hash=hash_key(settings.api_key_salt, key), salt_id=salt_id(settings.api_key_salt),
        scopes=",".join(validate_scopes(scopes)),
        allowed_from_domains=",".join(validate_domains(allowed_from_domains)) or None,
        default_sender=default_sender, allowed_ips=",".join(validate_networks(allowed_ips)) or None,
        created_at=utcnow(), monthly_quota=_positive("monthly_quota", monthly_quota),
        **{column: _positive(f"rate_limits.{name}", (rate_limits or {}).get(name))
           for name, column in (("burst", "rate_limit_burst"), ("hour", "rate_limit_hour"), ("today", "rate_limit_day"))},
    )
    db.session.add(row)
    db.session.flush()
    audit(actor, "key.create", f"key:{row.id}", source_ip, {"name": row.name, "scopes": row.scopes}, row.id)
    db.session.commit()
    return NewKey(row, key)


def _positive(field: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INTEGER_MAX:
        raise KeyError_("InvalidLimits", f"{field} must be a whole number from 1 to {INTEGER_MAX}")
    return value


@functools.cache
def _key_lookup():
    from ..events.emit import has_active_webhooks

    # Whether the key has webhooks comes along in the same query: most sends then need no
    # subscriber lookup of their own (one round trip fewer on the hottest path).
    return select(ApiKey, has_active_webhooks()).where(ApiKey.key_hash == bindparam("key_hash"))


def find_key(settings, presented: str) -> ApiKey | None:
    """The key row for a presented key, re-hashing keys still under the previous salt."""
    from ..events.emit import note_webhooks

    found = db.session.execute(_key_lookup(), {"key_hash": hash_key(settings.api_key_salt, presented)}).one_or_none()
    if found is not None:
        row, hooked = found
        note_webhooks(row.id, hooked)
        return row
    if not settings.api_key_salt_previous:
        return None
    row = db.session.execute(
        select(ApiKey).where(ApiKey.key_hash == hash_key(settings.api_key_salt_previous, presented))
    ).scalar_one_or_none()
    if row is not None:
        # Rotation after a security incident: move this key to the new salt on first use.
        row.key_hash = hash_key(settings.api_key_salt, presented)
        row.salt_id = salt_id(settings.api_key_salt)
        audit("system", "key.rehash", f"key:{row.id}", None, None, row.id)
        db.session.commit()
    return row


def revoke_key(key_id: int, *, actor: str, source_ip: str | None = None) -> ApiKey:
    row = db.session.get(ApiKey, key_id)
    if row is None:
        raise KeyError_("CredentialNotFound", f"No credential with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit(actor, "key.revoke", f"key:{row.id}", source_ip, {"name": row.name}, row.id)
        db.session.commit()
    return row


def rotate_key(settings, key_id: int, *, actor: str, source_ip: str | None = None) -> NewKey:
    """A new key with the same settings; the old one is revoked."""
    old = db.session.get(ApiKey, key_id)
    if old is None or old.revoked_at is not None:
        raise KeyError_("CredentialNotFound", f"No active credential with id {key_id}")
    new = create_key(settings, name=old.name, scopes=old.scopes, allowed_from_domains=old.from_domains,
                     default_sender=old.default_sender, allowed_ips=old.ip_networks,
                     rate_limits={"burst": old.rate_limit_burst, "hour": old.rate_limit_hour,
                                  "today": old.rate_limit_day},
                     monthly_quota=old.monthly_quota, actor=actor, source_ip=source_ip)
    revoke_key(key_id, actor=actor, source_ip=source_ip)
    audit(actor, "key.rotate", f"key:{key_id}", source_ip, {"replacement": new.row.id}, new.row.id)
    db.session.commit()
    return new


def keys_on_previous_salt(settings) -> int:
    return db.session.execute(
        select(func.count()).select_from(ApiKey)
        .where(ApiKey.salt_id != salt_id(settings.api_key_salt), ApiKey.revoked_at.is_(None))
    ).scalar_one()


def audit(actor: str, action: str, target: str | None, source_ip: str | None, detail, api_key_id=None) -> None:
    db.session.add(AuditEntry(at=utcnow(), actor=actor, action=action, target=target, source_ip=source_ip,
                              detail=None if detail is None else json.dumps(detail), api_key_id=api_key_id))


def describe_key(row: ApiKey) -> dict:
    from ..timeutil import isoformat

    # Ids are JSON strings: the Node CLI keeps them as strings and compares them with ===.
    return {
        "id": str(row.id), "name": row.name, "prefix": row.prefix, "scopes": sorted(row.scope_set, key=SCOPES.index),
        "allowed_from_domains": row.from_domains, "default_sender": row.default_sender,
        "allowed_ips": row.ip_networks, "created_at": isoformat(row.created_at),
        "last_used_at": isoformat(row.last_used_at), "revoked_at": isoformat(row.revoked_at),
        "revoked": row.revoked_at is not None, "status": "active" if row.revoked_at is None else "revoked",
        "rate_limits": {"burst": row.rate_limit_burst, "hour": row.rate_limit_hour, "today": row.rate_limit_day},
        "monthly_quota": row.monthly_quota,
    }


def system_key(settings, name: str, actor: str) -> ApiKey:
    """The send-only key one of our own subsystems (alerting, the status page) mails through,
    created on first use, so its mail goes through the gateway like anyone's."""
    key = db.session.execute(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))).scalars().first()
    return key or create_key(settings, name=name, scopes=["send"], actor=actor).row
