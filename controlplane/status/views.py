"""Statuspage-compatible JSON (CONTRACTS.md §5): /api/v2/status.json and /api/v2/components.json.

Public (no key), cacheable: each answer carries an ETag and Last-Modified (the newest check
result behind it) and answers 304 to a matching If-None-Match or If-Modified-Since.

Absolute links (page.url, shortlinks, feed links) come from STATUS_PAGE_URL only, never from the
request's Host: answers are cached by path and shared by every visitor, so one request with a
forged Host would otherwise point everyone's links at the forger's site.
"""
from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, Response, current_app, request

from ..gateway.params import require_int
from ..timeutil import isoformat, utcnow
from .cache import cached
from .components import DESCRIPTIONS, component_statuses, page_indicator, recent_traffic, remember
from .subscribers import public_url

bp = Blueprint("status", __name__)
log = logging.getLogger("controlplane.status")


def warn_without_public_url(settings) -> None:
    """Outside development, links without STATUS_PAGE_URL point at the development address."""
    if settings.status_page_url is None and settings.env != "development":
        log.warning("STATUS_PAGE_URL is not set: the status feeds, summary.json and subscriber mail link to %s; "
                    "set STATUS_PAGE_URL to the page's public address", public_url(settings))


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
            "url": public_url(settings), "time_zone": "Etc/UTC",
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


def _components_json(statuses) -> list[dict]:
    """Statuspage component objects: each component in checks.yaml order, then each group (its
    worst member's status, `components` naming the members). Times are the stored ones."""
    page_id = current_app.extensions["controlplane.settings"].status_page_id
    groups: dict[str, tuple[str, list]] = {}
    for status in statuses:
        if status.group:
            groups.setdefault(_group_id(status.group), (status.group, []))[1].append(status)
    group_status = {gid: max(members, key=lambda s: GROUP_ORDER.index(s.status)).status
                    for gid, (_, members) in groups.items()}
    stamps = remember({**{s.id: s.status for s in statuses}, **group_status}, utcnow())
    out = [_component_object(page_id, position, status.id, status.name, status.status, stamps[status.id],
                             description=status.description or None, showcase=True,
                             group_id=_group_id(status.group) if status.group else None)
           for position, status in enumerate(statuses, start=1)]
    for position, (group_id, (name, members)) in enumerate(groups.items(), start=len(out) + 1):
        out.append({**_component_object(page_id, position, group_id, name, group_status[group_id], stamps[group_id]),
                    "group": True, "components": [m.id for m in members]})
    return out


def _group_id(group: str) -> str:
    return f"group-{_slug(group)}"


def _component_object(page_id, position: int, component_id: str, name: str, status: str, stamps, *,
                      description=None, showcase: bool = False, group_id=None) -> dict:
    return {"id": component_id, "name": name, "status": status, "created_at": isoformat(stamps.created_at),
            "updated_at": isoformat(stamps.updated_at), "position": position, "description": description,
            "showcase": showcase, "start_date": stamps.created_at.date().isoformat(), "group_id": group_id,
            "page_id": page_id, "group": False, "only_show_if_degraded": False}


def _by_id(components: list[dict]) -> dict[str, dict]:
    return {c["id"]: c for c in components}


def _base() -> str:
    return public_url(current_app.extensions["controlplane.settings"])


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
    return _cacheable({"page": _page(updated), "components": _components_json(statuses)}, updated)


def _incidents(unresolved_only: bool, components: list[dict]) -> list[dict]:
    from sqlalchemy import select

    from ..extensions import db
    from .incidents import describe_all
    from .models import Incident

    query = select(Incident).order_by(Incident.created_at.desc()).limit(50)
    if unresolved_only:
        query = query.where(Incident.status != "resolved")
    page_id = current_app.extensions["controlplane.settings"].status_page_id
    return describe_all(list(db.session.execute(query).scalars()), page_id, _by_id(components), _base())


def _newest(updated, incidents: list[dict]):
    from datetime import datetime

    stamps = [datetime.fromisoformat(i["updated_at"]) for i in incidents]
    return max([updated, *[s if s.tzinfo else s.replace(tzinfo=updated.tzinfo) for s in stamps]])


@bp.get("/api/v2/summary.json")
@cached
def summary_json():
    statuses, updated = current_statuses()
    indicator = page_indicator(statuses)
    components = _components_json(statuses)
    incidents = _incidents(unresolved_only=True, components=components)
    updated = _newest(updated, incidents)
    maintenances = _maintenances("active", components) + _maintenances("upcoming", components)
    return _cacheable({"page": _page(updated), "status": {"indicator": indicator, "description": DESCRIPTIONS[indicator]},
                       "components": components, "incidents": incidents,
                       "scheduled_maintenances": maintenances}, updated)


def _maintenances(kind: str, components: list[dict] | None = None) -> list[dict]:
    """Scheduled maintenances of `kind`; with `components`, each carries the full objects it covers."""
    from .maintenance import describe, listing

    now = utcnow()
    config = current_app.extensions["controlplane.health"].config
    page_id = current_app.extensions["controlplane.settings"].status_page_id
    by_id = None if components is None else _by_id(components)
    return [describe(row, config, page_id, now, by_id, _base()) for row in listing(kind, now)]


def _maintenance_list(kind: str) -> Response:
    statuses, updated = current_statuses()
    maintenances = _maintenances(kind, _components_json(statuses))
    return _cacheable({"page": _page(updated), "scheduled_maintenances": maintenances}, updated)


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
    statuses, updated = current_statuses()
    incidents = _incidents(unresolved_only, _components_json(statuses))
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
    incidents = _incidents(unresolved_only=False, components=_components_json(statuses))
    updated = _newest(updated, incidents)
    base = _base()
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
    from .feeds import UPTIME_COLORS, badge
    from .history import component_uptime, uptime_grade, uptime_label

    status, updated = _component(component_id)
    days = require_int(request.args.get("days", "30"), "days", "InvalidPeriod", minimum=1, maximum=90, status=422)
    share = component_uptime(current_app.extensions["controlplane.health"].config, component_id, days,
                             utcnow().date())
    color = UPTIME_COLORS[uptime_grade(share)]
    return _cacheable(badge(f"uptime {days}d", uptime_label(share), color), updated, "image/svg+xml")
