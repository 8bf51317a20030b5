"""Incidents and their updates (CONTRACTS.md §5)."""
from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import UTCDateTime
from ..extensions import db

INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved")
IMPACTS = ("none", "minor", "major", "critical")


class Incident(db.Model):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    impact: Mapped[str] = mapped_column(String(16), nullable=False)
    postmortem: Mapped[str | None] = mapped_column(Text)
    # Opened by an alert rule (its name), not a person; people may still edit it.
    automatic: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    alert_rule: Mapped[str | None] = mapped_column(String(64))
    created_at = mapped_column(UTCDateTime, nullable=False)
    updated_at = mapped_column(UTCDateTime, nullable=False)
    resolved_at = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_incidents_status_created", "status", "created_at"),)


class IncidentUpdate(db.Model):
    __tablename__ = "incident_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    # JSON list of {code, name, old_status, new_status}
    affected_components: Mapped[str] = mapped_column(Text, nullable=False, default="[]")
    author: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at = mapped_column(UTCDateTime, nullable=False)


class Maintenance(db.Model):
    """Planned work: its components show under_maintenance during the window, and alerts of rules
    whose status component it covers are silenced. Its status follows the clock."""

    __tablename__ = "maintenances"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    components: Mapped[str] = mapped_column(Text, nullable=False, default="[]")  # JSON list of ids
    scheduled_for = mapped_column(UTCDateTime, nullable=False)
    scheduled_until = mapped_column(UTCDateTime, nullable=False)
    cancelled_at = mapped_column(UTCDateTime)
    author: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_maintenances_window", "scheduled_for", "scheduled_until"),)


class Subscriber(db.Model):
    """Someone told of incidents and maintenance: an email address (confirmed by double opt-in
    before it gets anything else) or a webhook URL (added by an operator, signed with `secret`).
    `token` is the capability in the confirm and unsubscribe links."""

    __tablename__ = "status_subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)  # email | webhook
    address: Mapped[str] = mapped_column(String(2048), nullable=False)
    token: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    secret: Mapped[str | None] = mapped_column(String(128))
    created_at = mapped_column(UTCDateTime, nullable=False)
    confirmation_sent_at = mapped_column(UTCDateTime)
    confirmed_at = mapped_column(UTCDateTime)
    unsubscribed_at = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("kind", "address", name="uq_status_subscribers_kind_address"),)


class StatusEvent(db.Model):
    """Something subscribers hear about, written in the same transaction as the change itself.
    `key` makes each one happen once (an incident update, a maintenance start or end)."""

    __tablename__ = "status_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(80), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    update_id: Mapped[int | None] = mapped_column(ForeignKey("incident_updates.id", ondelete="CASCADE"))
    maintenance_id: Mapped[int | None] = mapped_column(ForeignKey("maintenances.id", ondelete="CASCADE"))
    created_at = mapped_column(UTCDateTime, nullable=False)
    fanned_out_at = mapped_column(UTCDateTime, index=True)


class StatusNotification(db.Model):
    """One event for one subscriber: the unique pair is what makes it exactly one."""

    __tablename__ = "status_notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("status_subscribers.id", ondelete="CASCADE"), nullable=False)
    event_id: Mapped[int] = mapped_column(ForeignKey("status_events.id", ondelete="CASCADE"), nullable=False)
    state: Mapped[str] = mapped_column(String(8), nullable=False, default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at = mapped_column(UTCDateTime, nullable=False)
    sent_at = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("subscriber_id", "event_id", name="uq_status_notifications_once"),
                      Index("ix_status_notifications_due", "state", "next_attempt_at"))


class ComponentRecord(db.Model):
    """What the page remembers of each component and group (checks.yaml holds the rest): when it
    first appeared and when its status last changed, the `created_at`/`updated_at` that
    Statuspage clients read (they must not move with every request)."""

    __tablename__ = "status_components"

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    status: Mapped[str] = mapped_column(String(24), nullable=False)
    created_at = mapped_column(UTCDateTime, nullable=False)
    updated_at = mapped_column(UTCDateTime, nullable=False)
