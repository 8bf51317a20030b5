"""Deploy and migration records: failures fire the DeploymentFailed / MigrationFailed rules,
successes go to PagerDuty as change events (which never page)."""
from __future__ import annotations

import json
import logging

from ..extensions import db
from ..timeutil import isoformat, utcnow
from .models import AlertNotification, Deployment

log = logging.getLogger("controlplane.alerting")
KINDS = ("deploy", "migration")
STATUSES = ("started", "succeeded", "failed")


class DeploymentError(ValueError):
    pass


def record_deployment(settings, kind: str, status: str, version: str | None = None, commit: str | None = None,
                      detail: str | None = None, deployment_id: int | None = None) -> Deployment:
    """Start a deployment, or finish the one named by `deployment_id` (or record one in one step)."""
    if kind not in KINDS:
        raise DeploymentError(f"kind must be one of {', '.join(KINDS)}")
    if status not in STATUSES:
        raise DeploymentError(f"status must be one of {', '.join(STATUSES)}")
    for name, value in (("version", version), ("commit", commit)):
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise DeploymentError(f"{name} must be a string of at most 64 characters")
    if detail is not None and not isinstance(detail, str):
        raise DeploymentError("detail must be a string")
    now = utcnow()
    if deployment_id is not None:
        row = db.session.get(Deployment, deployment_id)
        if row is None or row.kind != kind:
            raise DeploymentError(f"no {kind} with id {deployment_id}")
        if row.status != "started":
            raise DeploymentError(f"{kind} {deployment_id} already {row.status}")
        if status == "started":
            raise DeploymentError(f"{kind} {deployment_id} has already started")
    else:
        row = Deployment(kind=kind, started_at=now)
        db.session.add(row)
    row.status = status
    row.version = version or row.version
    row.commit = commit or row.commit
    row.detail = (detail or row.detail or "")[:4000] or None
    if status != "started":
        row.finished_at = now
    if status == "succeeded":
        db.session.flush()  # the id names the change event
        _change_event(settings, row, now)
    db.session.commit()
    (log.error if status == "failed" else log.info)(f"{kind} {status}", extra={
        "version": row.version, "commit": row.commit, "detail": row.detail})
    return row


def _change_event(settings, row: Deployment, now) -> None:
    route = "default" if "default" in settings.pagerduty_routes else next(iter(settings.pagerduty_routes), None)
    if route is None:
        return
    what = "Deployed" if row.kind == "deploy" else "Migrated the database to"
    payload = {"summary": f"{what} {row.version or row.commit or 'a new version'}"[:1024],
               "source": settings.otel_service_name, "timestamp": now.isoformat(),
               "custom_details": {"kind": row.kind, "version": row.version, "commit": row.commit,
                                  "started_at": isoformat(row.started_at), "detail": row.detail}}
    db.session.add(AlertNotification(channel="pagerduty", rule=f"{row.kind}-change", action="change",
                                     dedup_key=f"mailgoat-cp/{row.kind}/{row.id}", route=route,
                                     payload=json.dumps(payload, default=str), state="pending", attempts=0,
                                     repeats_left=0, next_attempt_at=now, created_at=now))


def last_finished(kind: str) -> Deployment | None:
    """The newest deployment of `kind` that succeeded or failed."""
    from sqlalchemy import select

    return db.session.execute(
        select(Deployment).where(Deployment.kind == kind, Deployment.status.in_(("succeeded", "failed")))
        .order_by(Deployment.finished_at.desc()).limit(1)).scalar_one_or_none()


def describe(row: Deployment) -> dict:
    return {"id": row.id, "kind": row.kind, "status": row.status, "version": row.version, "commit": row.commit,
            "started_at": isoformat(row.started_at), "finished_at": isoformat(row.finished_at), "detail": row.detail}


def record_migration(settings, status: str, revision: str, detail: str | None = None) -> None:
    """`controlplane db upgrade` reports itself; the table may not exist yet (or any more)."""
    from ..version import COMMIT

    try:
        db.session.rollback()
        record_deployment(settings, "migration", status, version=revision[:64], commit=COMMIT[:64], detail=detail)
    except Exception as exc:
        db.session.rollback()
        log.warning("could not record the migration's outcome: %s", str(exc).splitlines()[0] if str(exc) else exc)
