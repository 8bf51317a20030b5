"""The gateway's tables: API keys, the audit log, and messages with their recipients."""
from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db

SCOPES = ("send", "read", "admin")
MESSAGE_STATES = ("queued", "scheduled", "sending", "retrying", "sent", "delivered", "delayed", "bounced", "held",
                  "failed", "cancelled")  # messages.state


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
    # None: the service-wide default from settings.
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    rate_limit_hour: Mapped[int | None] = mapped_column(Integer)
    rate_limit_day: Mapped[int | None] = mapped_column(Integer)
    monthly_quota: Mapped[int | None] = mapped_column(Integer)
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


class Message(db.Model):
    """An accepted message: the outbox row the delivery worker claims, and what reads return."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_messages_api_key_idempotency_key"),
        Index("ix_messages_due", "state", "next_attempt_at"),
        # What the delivery loop scans for: only the rows still owed to Postal, in due order.
        Index("ix_messages_outbox", "next_attempt_at",
              postgresql_where=text("state IN ('queued', 'scheduled', 'retrying')"),
              sqlite_where=text("state IN ('queued', 'scheduled', 'retrying')")),
        Index("ix_messages_key_created", "api_key_id", "created_at"),  # the monthly quota count
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    message_id: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    # message (send/message) or raw (send/raw)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    # queued | scheduled | sending | retrying | sent | delivered | delayed | bounced | held | failed | cancelled
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    params: Mapped[str] = mapped_column(Text, nullable=False)  # the send parameters as JSON
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    tag: Mapped[str | None] = mapped_column(String(255), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    send_at = mapped_column(UTCDateTime)
    next_attempt_at = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(160))
    claim_expires_at = mapped_column(UTCDateTime)
    error_code: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    postal_message_id: Mapped[str | None] = mapped_column(String(320))
    created_at = mapped_column(UTCDateTime, nullable=False, index=True)
    updated_at = mapped_column(UTCDateTime, nullable=False)
    sent_at = mapped_column(UTCDateTime)


class MessageRecipient(db.Model):
    """One recipient of a message, with the id and token the send response gave for it."""

    __tablename__ = "message_recipients"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True)
    address: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    token: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    postal_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    postal_token: Mapped[str | None] = mapped_column(String(16), index=True)
    status: Mapped[str | None] = mapped_column(String(16))


class PostalEvent(db.Model):
    """Every webhook Postal delivered, once: Postal retries, and its uuid makes handling idempotent."""

    __tablename__ = "postal_events"

    uuid: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(64), nullable=False)
    received_at = mapped_column(UTCDateTime, nullable=False, index=True)
    postal_message_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    payload: Mapped[str] = mapped_column(Text, nullable=False)


ROLES = ("admin", "operator", "viewer")


class User(db.Model):
    """A person who signs in (POST /api/v1/auth/login) and acts with a JWT."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at = mapped_column(UTCDateTime, nullable=False)
    last_login_at = mapped_column(UTCDateTime)
    disabled_at = mapped_column(UTCDateTime)


class UsageDay(db.Model):
    """Messages per key per UTC day, by outcome: rolled up from `messages` by the usage job."""

    __tablename__ = "usage_daily"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    day = mapped_column(Date, primary_key=True)
    accepted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sent: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    delivered: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bounced: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at = mapped_column(UTCDateTime, nullable=False)


class InboundMessage(db.Model):
    """Mail Postal received for us and posted to the inbound endpoint (Hash or RawMessage format)."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    postal_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    format: Mapped[str] = mapped_column(String(16), nullable=False)  # hash | raw
    rcpt_to: Mapped[str | None] = mapped_column(String(320), index=True)
    mail_from: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    received_at = mapped_column(UTCDateTime, nullable=False, index=True)
