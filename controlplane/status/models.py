"""Incidents and their updates (CONTRACTS.md §5)."""
from sqlalchemy import Boolean, ForeignKey, Index, String, Text
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
