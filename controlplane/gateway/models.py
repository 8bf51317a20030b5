"""The gateway's stored identities: API keys and the audit log of what was done with them."""
from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db

SCOPES = ("send", "read", "admin")


class ApiKey(db.Model):
    """An API key. The key itself is never stored: only HMAC-SHA256(API_KEY_SALT, key)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    # The first characters of the key, shown to humans to tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Fingerprint of the salt the hash was made with, so a rotation can count keys left behind.
    salt_id: Mapped[str] = mapped_column(String(16), nullable=False)
    scopes: Mapped[str] = mapped_column(String(64), nullable=False)
    allowed_from_domains: Mapped[str | None] = mapped_column(Text)
    default_sender: Mapped[str | None] = mapped_column(String(255))
    allowed_ips: Mapped[str | None] = mapped_column(Text)
    created_at = mapped_column(UTCDateTime, nullable=False)
    last_used_at = mapped_column(UTCDateTime)
    revoked_at = mapped_column(UTCDateTime)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(s for s in self.scopes.split(",") if s)

    @property
    def from_domains(self) -> list[str]:
        return [d for d in (self.allowed_from_domains or "").split(",") if d]

    @property
    def ip_networks(self) -> list[str]:
        return [n for n in (self.allowed_ips or "").split(",") if n]


class AuditEntry(db.Model):
    """Who did what to which key or user, when, and from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at = mapped_column(UTCDateTime, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(160), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str | None] = mapped_column(String(160))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
