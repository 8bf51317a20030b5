"""Users, passwords and JWTs.

Tokens are HS256 only (the algorithm is pinned when decoding, so `none` and algorithm confusion
are refused), carry a `kid` naming the secret that signed them, and verify against JWT_SECRET or
JWT_SECRET_PREVIOUS, so the plan's 90-day rotation logs nobody out.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import timedelta

import jwt
from sqlalchemy import select

from ..extensions import db
from ..timeutil import utcnow
from .keys import KeyError_, audit
from .models import ROLES, User
from .params import parse_int

ALGORITHM = "HS256"
ISSUER = "mailgoat-controlplane"
# scrypt parameters: about 50 ms and 16 MiB per hash here.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
MIN_PASSWORD_LENGTH = 12
ROLE_SCOPES = {"admin": frozenset({"admin", "read"}), "operator": frozenset({"read", "operate"}),
               "viewer": frozenset({"read"})}


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def create_user(email: str, password: str, role: str, *, actor: str) -> User:
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise KeyError_("InvalidEmail", "email must be an email address")
    if role not in ROLES:
        raise KeyError_("InvalidRole", f"role must be one of {', '.join(ROLES)}")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise KeyError_("WeakPassword", f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    email = email.strip().lower()
    if db.session.execute(select(User).where(User.email == email)).scalar_one_or_none():
        raise KeyError_("UserExists", f"a user {email} already exists")
    user = User(email=email, password_hash=hash_password(password), role=role, created_at=utcnow())
    db.session.add(user)
    db.session.flush()
    audit(actor, "user.create", f"user:{user.id}", None, {"email": email, "role": role})
    db.session.commit()
    return user


def kid_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def issue_token(settings, user: User) -> tuple[str, int]:
    now = utcnow()
    expires = now + timedelta(seconds=settings.jwt_ttl_seconds)
    claims = {"sub": str(user.id), "role": user.role, "iss": ISSUER, "iat": int(now.timestamp()),
              "exp": int(expires.timestamp())}
    token = jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM, headers={"kid": kid_of(settings.jwt_secret)})
    return token, int(expires.timestamp())


def user_from_token(settings, token: str) -> User | None:
    """The active user a token names, or None when the token is invalid, expired or the user is gone."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    secrets_by_kid = {kid_of(s): s for s in (settings.jwt_secret, settings.jwt_secret_previous) if s}
    secret = secrets_by_kid.get(kid)
    if secret is None:
        return None
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "iss"]})
    except jwt.PyJWTError:
        return None
    user_id = parse_int(claims["sub"])
    user = db.session.get(User, user_id) if user_id is not None else None
    return user if user is not None and user.disabled_at is None else None


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")
