"""Incident lifecycle: create, update, resolve; automatic incidents from alert rules.

An update moves the status forward (investigating -> identified -> monitoring -> resolved; steps
may be skipped, never taken back) and may declare affected components' new statuses, which hold
on the page until the incident resolves. A resolved incident takes no more updates, only a
postmortem.
"""
from __future__ import annotations

import json

from sqlalchemy import select

from ..extensions import db
from ..timeutil import isoformat, utcnow
from .models import IMPACTS, INCIDENT_STATUSES, Incident, IncidentUpdate

COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance")
MAX_BODY = 10_000
# An alert's severity is how urgently on-call must act; an incident's impact is what customers
# meet. A critical page means one component is out (Statuspage's "major"); "critical" impact is
# for an operator to declare when the whole service is down.
SEVERITY_IMPACT = {"critical": "major", "error": "minor", "warning": "minor", "info": "none"}
# How the page words each impact for people (the JSON keeps Statuspage's values).
IMPACT_WORDS = {"none": "No disruption", "minor": "Minor disruption", "major": "Major disruption",
                "critical": "Critical disruption"}


class IncidentError(ValueError):
    """What the status domain refuses (incidents, maintenance, subscribers), with its HTTP status."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status

    def for_api(self, subject: str):
        """As the JSON APIs answer it: {subject}NotFound, {subject}Cancelled, AlreadySubscribed,
        TooLarge or Invalid{subject}."""
        from ..gateway.envelope import GatewayError

        code = {404: f"{subject}NotFound", 409: "AlreadySubscribed", 410: f"{subject}Cancelled",
                413: "TooLarge"}.get(self.status, f"Invalid{subject}")
        return GatewayError(code, str(self), self.status)


def _components(config, declared) -> dict[str, str]:
    if declared in (None, {}):
        return {}
    if not isinstance(declared, dict):
        raise IncidentError("components must be an object of component id to status")
    known = {c.id for c in config.components}
    for component, status in declared.items():
        if component not in known:
            raise IncidentError(f"unknown component {component!r} (known: {', '.join(sorted(known))})")
        if status not in COMPONENT_STATUSES:
            raise IncidentError(f"component {component!r}: status must be one of {', '.join(COMPONENT_STATUSES)}")
    return declared


def _text(value, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise IncidentError(f"{name} is required")
    if len(value) > limit:
        raise IncidentError(f"{name} is longer than {limit} characters", 413)
    return value.strip()


def declared_statuses() -> dict[str, str]:
    """What unresolved incidents declare for their components (the newest declaration wins)."""
    out = {}
    rows = db.session.execute(
        select(IncidentUpdate.affected_components).join(Incident, Incident.id == IncidentUpdate.incident_id)
        .where(Incident.status != "resolved").order_by(IncidentUpdate.id)).scalars()
    for affected in rows:
        for item in json.loads(affected):
            out[item["code"]] = item["new_status"]
    return out


def _affected(config, components: dict[str, str], current: dict[str, str]) -> str:
    names = {c.id: c.name for c in config.components}
    return json.dumps([{"code": code, "name": names[code], "old_status": current.get(code, "operational"),
                        "new_status": status} for code, status in components.items()])


def create_incident(config, current: dict[str, str], name, status, body, impact=None, components=None,
                    author: str = "operator", automatic: bool = False, alert_rule: str | None = None) -> Incident:
    name = _text(name, "name", 200)
    body = _text(body, "body", MAX_BODY)
    if status not in INCIDENT_STATUSES:
        raise IncidentError(f"status must be one of {', '.join(INCIDENT_STATUSES)}")
    impact = impact or "minor"
    if impact not in IMPACTS:
        raise IncidentError(f"impact must be one of {', '.join(IMPACTS)}")
    components = _components(config, components)
    now = utcnow()
    incident = Incident(name=name, status=status, impact=impact, automatic=automatic, alert_rule=alert_rule,
                        created_at=now, updated_at=now, resolved_at=now if status == "resolved" else None)
    db.session.add(incident)
    db.session.flush()
    _add_update(incident, IncidentUpdate(incident_id=incident.id, status=status, body=body, author=author[:120],
                                         affected_components=_affected(config, components, current),
                                         created_at=now), first=True)
    db.session.commit()
    return incident


def update_incident(config, current: dict[str, str], incident_id: int, status, body, components=None,
                    author: str = "operator") -> Incident:
    incident = db.session.get(Incident, incident_id)
    if incident is None:
        raise IncidentError(f"no incident {incident_id}", 404)
    if incident.status == "resolved":
        raise IncidentError(f"incident {incident_id} is resolved: add a postmortem instead")
    if status not in INCIDENT_STATUSES:
        raise IncidentError(f"status must be one of {', '.join(INCIDENT_STATUSES)}")
    if INCIDENT_STATUSES.index(status) < INCIDENT_STATUSES.index(incident.status):
        raise IncidentError(f"an incident cannot go back from {incident.status} to {status}")
    body = _text(body, "body", MAX_BODY)
    components = _components(config, components)
    if status == "resolved" and not components:  # resolving restores what it declared
        declared = {item["code"] for update in _updates(incident.id) for item in json.loads(update.affected_components)}
        components = {code: "operational" for code in declared}
    now = utcnow()
    _add_update(incident, IncidentUpdate(incident_id=incident.id, status=status, body=body, author=author[:120],
                                         affected_components=_affected(config, components, current),
                                         created_at=now), first=False)
    incident.status, incident.updated_at = status, now
    if status == "resolved":
        incident.resolved_at = now
    db.session.commit()
    return incident


def _add_update(incident: Incident, row: IncidentUpdate, first: bool) -> None:
    """The update and the event subscribers hear of it by, in one transaction."""
    from .notify import record_incident_update

    db.session.add(row)
    db.session.flush()
    record_incident_update(incident, row, first)


def set_postmortem(incident_id: int, postmortem) -> Incident:
    incident = db.session.get(Incident, incident_id)
    if incident is None:
        raise IncidentError(f"no incident {incident_id}", 404)
    incident.postmortem = _text(postmortem, "postmortem", 50_000)
    incident.updated_at = utcnow()
    db.session.commit()
    return incident


def _updates(incident_id: int) -> list[IncidentUpdate]:
    return list(db.session.execute(select(IncidentUpdate).where(IncidentUpdate.incident_id == incident_id)
                                   .order_by(IncidentUpdate.id.desc())).scalars())


def describe(incident: Incident, page_id: str, updates: list[IncidentUpdate] | None = None,
             components: dict[str, dict] | None = None, base: str | None = None) -> dict:
    """An incident as Statuspage shows it: updates newest first; a resolved incident with a
    postmortem shows the status `postmortem` (stored, it stays resolved).

    `components` (id -> the component's public object) fills `components` with the full objects
    the incident affects, as the public JSON does; without it they are {id, name} only. `base`
    (STATUS_PAGE_URL, never a request's Host) makes the `shortlink`."""
    status = "postmortem" if incident.status == "resolved" and incident.postmortem else incident.status
    updates = _updates(incident.id) if updates is None else updates
    monitoring = [u.created_at for u in updates if u.status == "monitoring"]
    affected = [json.loads(u.affected_components) for u in updates]
    return {
        "id": str(incident.id), "name": incident.name, "status": status, "impact": incident.impact,
        "created_at": isoformat(incident.created_at), "updated_at": isoformat(incident.updated_at),
        "monitoring_at": isoformat(min(monitoring)) if monitoring else None,
        "resolved_at": isoformat(incident.resolved_at), "started_at": isoformat(incident.created_at),
        "shortlink": f"{base}/incidents/{incident.id}" if base else None, "page_id": page_id,
        "postmortem_body": incident.postmortem, "automatic": incident.automatic,
        "incident_updates": [_describe_update(incident, update, items) for update, items in zip(updates, affected)],
        "components": affected_objects([item for items in reversed(affected) for item in items], components),
    }


def _describe_update(incident: Incident, update: IncidentUpdate, affected: list[dict]) -> dict:
    return {"id": str(update.id), "status": update.status, "body": update.body, "incident_id": str(incident.id),
            "created_at": isoformat(update.created_at), "updated_at": isoformat(update.created_at),
            "display_at": isoformat(update.created_at), "affected_components": affected,
            "deliver_notifications": True, "custom_tweet": None, "tweet_id": None}


def affected_objects(items: list[dict], components: dict[str, dict] | None) -> list[dict]:
    """Each affected component once, in the order first declared: its full public object when
    `components` holds it, else {id, name}."""
    seen: dict[str, dict] = {}
    for item in items:
        code = item.get("code") or item.get("id")
        if code not in seen:
            full = (components or {}).get(code)
            seen[code] = full if full is not None else {"id": code, "name": item.get("name", code)}
    return list(seen.values())


def describe_for_operators(incident: Incident, page_id: str) -> dict:
    """What the operator API and CLI show: the public document plus the alert rule that opened it
    (a rule's name is internal, so the public page and JSON leave it out)."""
    return {**describe(incident, page_id), "alert_rule": incident.alert_rule}


def describe_all(incidents: list[Incident], page_id: str, components: dict[str, dict] | None = None,
                 base: str | None = None) -> list[dict]:
    """Several incidents, their updates read in one query rather than one per incident."""
    by_incident: dict[int, list[IncidentUpdate]] = {i.id: [] for i in incidents}
    if incidents:
        for update in db.session.execute(select(IncidentUpdate).where(IncidentUpdate.incident_id.in_(list(by_incident)))
                                         .order_by(IncidentUpdate.id.desc())).scalars():
            by_incident[update.incident_id].append(update)
    return [describe(incident, page_id, by_incident[incident.id], components, base) for incident in incidents]


RESOLVED_TEXT = "This incident has been resolved and the service is operating normally."


def on_alert_transition(config, transition) -> None:
    """Rules with `open_incident` open an incident when they fire and resolve it when they resolve.
    The incident says what the rule's public annotations say (written for customers); the
    internal summary with its figures stays in PagerDuty and the operator views."""
    rule = transition.rule
    if not rule.open_incident:
        return
    open_one = db.session.execute(select(Incident).where(Incident.alert_rule == rule.name, Incident.automatic.is_(True),
                                                         Incident.status != "resolved")).scalars().first()
    if transition.name == "firing" and open_one is None:
        status = {"critical": "major_outage", "error": "partial_outage"}.get(rule.severity, "degraded_performance")
        components = {rule.status_component: status} if rule.status_component else {}
        create_incident(config, {}, rule.annotations["public_title"][:200], "investigating",
                        rule.annotations["public_description"], SEVERITY_IMPACT[rule.severity], components,
                        author="alerting", automatic=True, alert_rule=rule.name)
    elif transition.name == "resolved" and open_one is not None:
        update_incident(config, {}, open_one.id, "resolved", RESOLVED_TEXT, author="alerting")
