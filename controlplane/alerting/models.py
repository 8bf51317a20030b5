"""Alert state (persisted, so a restart or a new leader neither loses `for` progress nor pages
twice), the transition history, and deployment records."""
from sqlalchemy import Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..dbtypes import BigIntPK, UTCDateTime
from ..extensions import db


class AlertState(db.Model):
    __tablename__ = "alert_states"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), nullable=False)
    # A stable text form of the label set (sorted JSON); the dedup key derives from rule + this.
    labels_key: Mapped[str] = mapped_column(String(500), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # inactive, pending, firing
    active_since = mapped_column(UTCDateTime)  # when the condition started to hold (pending)
    fired_at = mapped_column(UTCDateTime)
    last_breach_at = mapped_column(UTCDateTime)  # the newest evaluation that breached
    resolved_at = mapped_column(UTCDateTime)
    last_value: Mapped[float | None] = mapped_column(Float)
    last_evaluated_at = mapped_column(UTCDateTime)
    last_notified_at = mapped_column(UTCDateTime)
    # Why the rule's indicator could not measure (None when it can): the rule is in error and
    # keeps its alert state until it measures again; AlertRuleFailing pages about it.
    error: Mapped[str | None] = mapped_column(Text)
    error_since = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("rule", "labels_key", name="uq_alert_states_rule_labels"),)


class Installation(db.Model):
    """One row: when this database was first migrated. A new install is measured from it (the
    backup-age and worker rules), so a fresh start pages nobody."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_migrated_at = mapped_column(UTCDateTime, nullable=False)


class AlertEvent(db.Model):
    """One transition: pending, firing, resolved (and back to inactive from pending)."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64), nullable=False)
    labels_key: Mapped[str] = mapped_column(String(500), nullable=False)
    transition: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[float | None] = mapped_column(Float)
    at = mapped_column(UTCDateTime, nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_alert_events_at", "at"),)


class Deployment(db.Model):
    """A deploy or a migration: started, then succeeded or failed (issue 5, section 6)."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # deploy, migration
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # started, succeeded, failed
    version: Mapped[str | None] = mapped_column(String(64))
    commit: Mapped[str | None] = mapped_column(String(64))
    started_at = mapped_column(UTCDateTime, nullable=False)
    finished_at = mapped_column(UTCDateTime)
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_deployments_kind_finished", "kind", "finished_at"),)


class AlertNotification(db.Model):
    """The notification outbox: written by evaluation, sent by the notifier job, never inline."""

    __tablename__ = "alert_notifications"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)  # pagerduty
    rule: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)  # trigger, resolve
    dedup_key: Mapped[str] = mapped_column(String(255), nullable=False)
    # Which routing key (PAGERDUTY_ROUTING_KEY or an override) by its setting's name, never the key.
    route: Mapped[str] = mapped_column(String(64), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Resolves are sent again a few times: a resolve PagerDuty lost leaves an incident open.
    repeats_left: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at = mapped_column(UTCDateTime, nullable=False)
    created_at = mapped_column(UTCDateTime, nullable=False)
    sent_at = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_alert_notifications_due", "state", "next_attempt_at"),
                      Index("ix_alert_notifications_sent", "route", "sent_at"))


class AlertRoute(db.Model):
    """One row per channel and route: locked by the notifier that spends the route's budget (so two
    notifiers never both spend it), and paused after the channel answered 429."""

    __tablename__ = "alert_routes"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused_until = mapped_column(UTCDateTime)
    pause_reason: Mapped[str | None] = mapped_column(Text)


class AlertAttempt(db.Model):
    """One request to a channel, kept a few minutes: what a route's per-minute limit counts. The
    far end counts throttled and failed requests too, so every attempt is one."""

    __tablename__ = "alert_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16), nullable=False)
    route: Mapped[str] = mapped_column(String(64), nullable=False)
    at = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_alert_attempts_route_at", "channel", "route", "at"),)


class Silence(db.Model):
    """Suppresses notifications (never state) for alerts whose labels match, between start and end.

    `matchers` is a JSON object of label -> value (`alertname` is the rule's name); an empty
    object matches every alert, which is what a maintenance window is.
    """

    __tablename__ = "alert_silences"

    id: Mapped[int] = mapped_column(primary_key=True)
    matchers: Mapped[str] = mapped_column(Text, nullable=False)
    starts_at = mapped_column(UTCDateTime, nullable=False)
    ends_at = mapped_column(UTCDateTime, nullable=False)
    author: Mapped[str] = mapped_column(String(120), nullable=False)
    comment: Mapped[str] = mapped_column(Text, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="silence")  # silence, maintenance
    created_at = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_alert_silences_ends", "ends_at"),)
