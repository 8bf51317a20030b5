"""Statuspage-compatible JSON (CONTRACTS.md §5): /api/v2/status.json and /api/v2/components.json.

Public (no key), cacheable: each answer carries an ETag and Last-Modified (the newest check
result behind it) and answers 304 to a matching If-None-Match or If-Modified-Since.
"""
from __future__ import annotations

import json
import re

from flask import Blueprint, Response, current_app, request

from ..timeutil import utcnow
from .cache import cached
from .components import DESCRIPTIONS, component_statuses, page_indicator, recent_traffic

bp = Blueprint("status", __name__)


def _json_error(exc):
    from ..gateway.envelope import failure

    return failure(exc)


def _register_errors() -> None:
    from ..gateway.envelope import GatewayError

    bp.register_error_handler(GatewayError, _json_error)


_register_errors()
# A group shows its worst member; maintenance ranks above operational, below any trouble.
GROUP_ORDER = ("operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _page(updated_at) -> dict:
    settings = current_app.extensions["controlplane.settings"]
    return {"id": settings.status_page_id, "name": settings.status_page_name,
            "url": settings.status_page_url or request.host_url.rstrip("/"), "time_zone": "Etc/UTC",
            "updated_at": updated_at.isoformat()}


def current_statuses():
    health = current_app.extensions["controlplane.health"]
    view = health.cache.get().current(health.specs)
    now = utcnow()
    from .incidents import declared_statuses
    from .maintenance import components_under_maintenance

    statuses = component_statuses(health.config, view, recent_traffic(now), declared_statuses(),
                                  components_under_maintenance(now))
    updated = max((s.updated_at for s in statuses if s.updated_at), default=now)
    return statuses, updated


def _components_json(statuses, updated) -> list[dict]:
    page_id = current_app.extensions["controlplane.settings"].status_page_id
    out, groups = [], {}
    for position, status in enumerate(statuses, start=1):
        group_id = f"group-{_slug(status.group)}" if status.group else None
        if group_id:
            groups.setdefault(group_id, (status.group, []))[1].append(status)
        out.append({"id": status.id, "name": status.name, "status": status.status,
                    "created_at": updated.isoformat(), "updated_at": (status.updated_at or updated).isoformat(),
                    "position": position, "description": status.description or None, "showcase": True,
                    "start_date": None, "group_id": group_id, "page_id": page_id, "group": False,
                    "only_show_if_degraded": False})
    for position, (group_id, (name, members)) in enumerate(groups.items(), start=len(out) + 1):
        worst = max(members, key=lambda s: GROUP_ORDER.index(s.status))
        out.append({"id": group_id, "name": name, "status": worst.status, "created_at": updated.isoformat(),
                    "updated_at": updated.isoformat(), "position": position, "description": None,
                    "showcase": False, "start_date": None, "group_id": None, "page_id": page_id, "group": True,
                    "only_show_if_degraded": False, "components": [m.id for m in members]})
    return out


def public(response: Response) -> Response:
    """A public answer browsers and CDNs may keep for 10 s, with an ETag, answering 304s."""
    response.cache_control.public = True
    response.cache_control.max_age = 10
    response.add_etag()
    return response.make_conditional(request)


def _cacheable(document, updated, mimetype: str = "application/json") -> Response:
    body = json.dumps(document, separators=(",", ":")) if mimetype == "application/json" else document
    response = Response(body, mimetype=mimetype)
    response.last_modified = updated.replace(microsecond=0)
    response.headers["Access-Control-Allow-Origin"] = "*"  # status widgets run on other sites
    return public(response)


@bp.get("/api/v2/status.json")
@cached
def status_json():
    statuses, updated = current_statuses()
    indicator = page_indicator(statuses)
    return _cacheable({"page": _page(updated), "status": {"indicator": indicator,
                                                          "description": DESCRIPTIONS[indicator]}}, updated)


@bp.get("/api/v2/components.json")
@cached
def components_json():
    statuses, updated = current_statuses()
    return _cacheable({"page": _page(updated), "components": _components_json(statuses, updated)}, updated)


def _incidents(unresolved_only: bool) -> list[dict]:
    from sqlalchemy import select

    from ..extensions import db
    from .incidents import describe_all
    from .models import Incident

    query = select(Incident).order_by(Incident.created_at.desc()).limit(50)
    if unresolved_only:
        query = query.where(Incident.status != "resolved")
    page_id = current_app.extensions["controlplane.settings"].status_page_id
    return describe_all(list(db.session.execute(query).scalars()), page_id)


def _newest(updated, incidents: list[dict]):
    from datetime import datetime

    stamps = [datetime.fromisoformat(i["updated_at"]) for i in incidents]
    return max([updated, *[s if s.tzinfo else s.replace(tzinfo=updated.tzinfo) for s in stamps]])


@bp.get("/api/v2/summary.json")
@cached
def summary_json():
    statuses, updated = current_statuses()
    indicator = page_indicator(statuses)
    incidents = _incidents(unresolved_only=True)
    updated = _newest(updated, incidents)
    maintenances = _maintenances("active") + _maintenances("upcoming")
    return _cacheable({"page": _page(updated), "status": {"indicator": indicator, "description": DESCRIPTIONS[indicator]},
                       "components": _components_json(statuses, updated), "incidents": incidents,
                       "scheduled_maintenances": maintenances}, updated)


def _maintenances(kind: str) -> list[dict]:
    from .maintenance import describe, listing

    now = utcnow()
    config = current_app.extensions["controlplane.health"].config
    page_id = current_app.extensions["controlplane.settings"].status_page_id
    return [describe(row, config, page_id, now) for row in listing(kind, now)]


def _maintenance_list(kind: str) -> Response:
    _, updated = current_statuses()
    return _cacheable({"page": _page(updated), "scheduled_maintenances": _maintenances(kind)}, updated)


@bp.get("/api/v2/scheduled-maintenances.json")
@cached
def maintenances_json():
    return _maintenance_list("all")


@bp.get("/api/v2/scheduled-maintenances/upcoming.json")
@cached
def upcoming_maintenances_json():
    return _maintenance_list("upcoming")


@bp.get("/api/v2/scheduled-maintenances/active.json")
@cached
def active_maintenances_json():
    return _maintenance_list("active")


def _incident_list(unresolved_only: bool) -> Response:
    _, updated = current_statuses()
    incidents = _incidents(unresolved_only)
    updated = _newest(updated, incidents)
    return _cacheable({"page": _page(updated), "incidents": incidents}, updated)


@bp.get("/api/v2/incidents.json")
@cached
def incidents_json():
    return _incident_list(unresolved_only=False)


@bp.get("/api/v2/incidents/unresolved.json")
@cached
def unresolved_incidents_json():
    return _incident_list(unresolved_only=True)


def _feed(render, mimetype: str) -> Response:
    statuses, updated = current_statuses()
    incidents = _incidents(unresolved_only=False)
    updated = _newest(updated, incidents)
    base = request.host_url.rstrip("/")
    return _cacheable(render(_page(updated), incidents, base), updated, mimetype)


@bp.get("/history.atom")
@cached
def history_atom():
    from .feeds import atom

    return _feed(atom, "application/atom+xml")


@bp.get("/history.rss")
@cached
def history_rss():
    from .feeds import rss

    return _feed(rss, "application/rss+xml")


def _component(component_id: str):
    from ..gateway.envelope import GatewayError

    statuses, updated = current_statuses()
    for status in statuses:
        if status.id == component_id:
            return status, updated
    raise GatewayError("ComponentNotFound", f"no component {component_id!r}", 404)


@bp.get("/badges/<component_id>.svg")
@cached
def status_badge(component_id: str):
    from .feeds import COLORS, LABELS, badge

    status, updated = _component(component_id)
    return _cacheable(badge(status.name, LABELS[status.status], COLORS[status.status]), updated, "image/svg+xml")


@bp.get("/badges/<component_id>/uptime.svg")
@cached
def uptime_badge(component_id: str):
    from ..gateway.envelope import GatewayError
    from .feeds import UPTIME_COLORS, badge
    from .history import component_uptime, uptime_grade, uptime_label

    status, updated = _component(component_id)
    days = request.args.get("days", "30")
    if not days.isdigit() or not 1 <= int(days) <= 90:
        raise GatewayError("InvalidPeriod", "days must be a whole number from 1 to 90", 422)
    share = component_uptime(current_app.extensions["controlplane.health"].config, component_id, int(days),
                             utcnow().date())
    color = UPTIME_COLORS[uptime_grade(share)]
    return _cacheable(badge(f"uptime {days}d", uptime_label(share), color), updated, "image/svg+xml")
