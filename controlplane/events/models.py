"""The event log (what SSE streams and subscribers receive) and subscriber webhooks with their outbox."""
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db

EVENT_TYPES = ("message.queued", "message.sent", "message.delivered", "message.delayed", "message.failed",
               "message.bounced", "message.held", "message.opened", "message.clicked", "message.inbound")


class Event(db.Model):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"), index=True)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    created_at = mapped_column(UTCDateTime, nullable=False, index=True)


class Webhook(db.Model):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    url: Mapped[str] = mapped_column(String(2048), nullable=False)
    secret: Mapped[str] = mapped_column(String(64), nullable=False)
    events: Mapped[str] = mapped_column(Text, nullable=False)  # comma-separated, or "*"
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    failure_streak: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at = mapped_column(UTCDateTime, nullable=False)
    last_used_at = mapped_column(UTCDateTime)
    deleted_at = mapped_column(UTCDateTime)

    def wants(self, event_type: str) -> bool:
        return self.events == "*" or event_type in self.events.split(",")


class WebhookDelivery(db.Model):
    """One event owed to one subscriber: the outbox row the fan-out job claims."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False, index=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=False)
    # pending | sending | delivered | dead
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at = mapped_column(UTCDateTime)
    claim_expires_at = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at = mapped_column(UTCDateTime, nullable=False)
    delivered_at = mapped_column(UTCDateTime)
