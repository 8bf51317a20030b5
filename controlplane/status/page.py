"""The public HTML status page: /status (and / when nothing else claims it), incident history and
incident pages, and the subscription pages. Server-rendered and complete without JavaScript;
static/refresh.js only swaps in a fresh copy every STATUS_PAGE_REFRESH_SECONDS.

The same templates render the static copy (`controlplane status export`): there, links are
relative file names (index.html, incident-3.html) instead of routes; see `Links`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, current_app, render_template, request
from markupsafe import Markup
from sqlalchemy import func, select

from ..extensions import db, limiter
from ..gateway.envelope import GatewayError
from ..gateway.params import request_params, require_int
from ..health.runner import HISTORY_DAYS
from ..timeutil import as_utc, utcnow
from .cache import cached
from .components import DESCRIPTIONS, page_indicator
from .feeds import LABELS
from .history import Slot, daily_uptime, period_uptime, response_times, uptime_grade, uptime_label
from .incidents import IMPACT_WORDS
from .models import Incident

bp = Blueprint("status_page", __name__, template_folder="templates", static_folder="static",
               static_url_path="/status/static")
HISTORY_PAGE_SIZE = 20
EXPORT_ENVIRON_KEY = "controlplane.status_export"  # set only by the exporter: no client can send it
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
INDICATOR_CLASS = {"none": "operational", "minor": "degraded_performance", "major": "partial_outage",
                   "critical": "major_outage"}


class Links:
    """Where the page's links point: routes when served, sibling files when exported."""

    def __init__(self, exported: bool):
        self.exported = exported

    def status(self) -> str:
        return "index.html" if self.exported else "/status"

    def history(self, page: int = 1) -> str:
        if self.exported:
            return "history.html" if page == 1 else f"history-{page}.html"
        return "/history" if page == 1 else f"/history?page={page}"

    def incident(self, incident_id) -> str:
        return f"incident-{incident_id}.html" if self.exported else f"/incidents/{incident_id}"

    def asset(self, name: str) -> str:
        return name if self.exported else f"/status/static/{name}"

    def file(self, path: str) -> str:
        """A machine-readable sibling such as api/v2/summary.json or history.atom."""
        return path if self.exported else f"/{path}"


def _links() -> Links:
    return Links(bool(request.environ.get(EXPORT_ENVIRON_KEY)))


def _settings():
    return current_app.extensions["controlplane.settings"]


def _render(template: str, status: int = 200, **context):
    from flask import make_response

    settings = _settings()
    links = _links()
    subscribe_action = None
    if not links.exported:
        subscribe_action = "/status/subscribe"
    elif settings.status_page_url:  # the static copy posts to the live service, when it is back
        subscribe_action = f"{settings.status_page_url}/status/subscribe"
    response = make_response(render_template(
        template, page_name=settings.status_page_name, logo_url=settings.status_page_logo_url,
        page_links=settings.status_page_links, refresh_seconds=settings.status_page_refresh_seconds,
        links=links, labels=LABELS, subscribe_action=subscribe_action, **context), status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if status == 200:
        from .views import public

        return public(response)
    response.cache_control.max_age = 0
    return response


# --- the page ------------------------------------------------------------------------------------

def uptime_bars(series) -> Markup:
    """One <rect> per day with its figure as a tooltip. Built here rather than in a template loop:
    20 components x 90 days is 1,800 of them, and this is a third of the page's render time."""
    parts = []
    for index, day in enumerate(series):
        share = day.uptime
        what = "no data" if share is None else f"{uptime_label(share)} up"
        if share is not None and day.down:
            what += f", {day.down} failed check{'s' if day.down > 1 else ''}"
        parts.append(f'<rect x="{index * 4}" width="3" height="34" class="{uptime_grade(share)}">'
                     f'<title>{day.day.isoformat()}: {what}</title></rect>')
    return Markup("".join(parts))


@dataclass
class Chart:
    """The 24-hour response-time chart as SVG geometry (so it needs no script). The SVG stretches
    to any width; its labels are HTML around it, so they stay readable on a phone."""
    width: int
    height: int
    p95_lines: list[str]
    p50_lines: list[str]
    ticks: list[tuple[str, float, str]]  # (css class, percent from the top, label)
    hours: list[str]
    rows: list[Slot]
    summary: str


def _nice_top(value_ms: float) -> float:
    for top in (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000):
        if value_ms <= top:
            return top
    return value_ms


def response_chart(slots: list[Slot]) -> Chart:
    width, height = 960, 200
    step = width / len(slots)
    seen = [s for s in slots if s.count]
    top = _nice_top(max((s.p95 or 0) * 1000 for s in seen)) if seen else 100

    def lines(attr: str) -> list[str]:
        runs, current = [], []
        for index, slot in enumerate(slots):
            value = getattr(slot, attr)
            if not slot.count or value is None:  # no requests: a break in the line, not a zero
                if current:
                    runs.append(current)
                current = []
                continue
            current.append((index * step + step / 2, height - min(value * 1000, top) / top * height))
        if current:
            runs.append(current)
        # A lone slot between gaps is drawn as a short dash across its own 15 minutes.
        runs = [[(run[0][0] - step / 2, run[0][1]), (run[0][0] + step / 2, run[0][1])] if len(run) == 1 else run
                for run in runs]
        return [" ".join(f"{x:.1f},{y:.1f}" for x, y in run) for run in runs]

    ticks = [(css, 100 - fraction * 100, f"{top * fraction:g} ms")
             for css, fraction in (("top", 1), ("middle", 0.5), ("bottom", 0))]
    hours = [f"{slot.start:%H:%M}" for index, slot in enumerate(slots) if index % 24 == 0] + ["now"]
    if seen:
        worst = max(seen, key=lambda s: s.p95 or 0)
        summary = (f"Over the last 24 hours, {sum(s.count for s in seen):,} requests; the slowest 15 minutes "
                   f"(from {worst.start:%H:%M} UTC) had a p95 of {worst.p95 * 1000:.0f} ms.")
    else:
        summary = "No requests in the last 24 hours."
    return Chart(width, height, lines("p95"), lines("p50"), ticks, hours, seen, summary)


def _group(statuses, uptime):
    """Components in declaration order, gathered under their group (None: no group)."""
    groups: list[tuple[str | None, list[dict]]] = []
    for status in statuses:
        if not groups or groups[-1][0] != status.group:
            groups.append((status.group, []))
        series = uptime[status.id]
        groups[-1][1].append({"status": status, "bars": uptime_bars(series),
                              "uptime": uptime_label(period_uptime(series))})
    return groups


def _incident_rows(query) -> list[Incident]:
    return list(db.session.execute(query).scalars())


def page_context() -> dict:
    from .views import _maintenances, _newest, current_statuses

    now = utcnow()
    statuses, updated = current_statuses()
    config = current_app.extensions["controlplane.health"].config
    indicator = page_indicator(statuses)
    active = _incident_rows(select(Incident).where(Incident.status != "resolved").order_by(Incident.created_at.desc()))
    recent = _incident_rows(select(Incident).where(Incident.status == "resolved",
                                                   Incident.resolved_at > now - timedelta(days=7))
                            .order_by(Incident.created_at.desc()).limit(10))
    active_views = _incident_views(active)
    return {"indicator": indicator, "indicator_class": INDICATOR_CLASS[indicator],
            "description": DESCRIPTIONS[indicator], "updated": _newest(updated, active_views),
            "groups": _group(statuses, daily_uptime(config, HISTORY_DAYS, now.date())),
            "history_days": HISTORY_DAYS, "chart": response_chart(response_times(now)),
            "active_incidents": active_views,
            "recent_incidents": _incident_views(recent),
            "maintenances": _maintenances("active") + _maintenances("upcoming")}


def _incident_views(incidents: list[Incident]) -> list[dict]:
    from .incidents import describe_all

    return describe_all(incidents, _settings().status_page_id)


@bp.get("/status")
@cached
def status_page():
    return _render("status/page.html", **page_context())


def history_pages(incidents: int) -> int:
    """How many /history pages `incidents` incidents fill (one, empty, when there are none)."""
    return max(1, -(-incidents // HISTORY_PAGE_SIZE))


def _history_page(page: int):
    total = db.session.execute(select(func.count()).select_from(Incident)).scalar()
    pages = history_pages(total)
    if page < 1 or page > pages:
        raise GatewayError("PageNotFound", f"history has pages 1 to {pages}", 404)
    rows = _incident_rows(select(Incident).order_by(Incident.created_at.desc(), Incident.id.desc())
                          .offset((page - 1) * HISTORY_PAGE_SIZE).limit(HISTORY_PAGE_SIZE))
    return {"incidents": _incident_views(rows), "page": page, "pages": pages, "total": total}


@bp.get("/history")
@cached
def history_page():
    page = require_int(request.args.get("page", "1"), "page", "InvalidPage", minimum=0, status=422)
    return _render("status/history.html", **_history_page(page))


@bp.get("/incidents/<int:incident_id>")
@cached
def incident_page(incident_id: int):
    incident = db.session.get(Incident, incident_id)
    if incident is None:
        raise GatewayError("IncidentNotFound", f"no incident {incident_id}", 404)
    return _render("status/incident.html", incident=_incident_views([incident])[0])


# --- subscriptions -------------------------------------------------------------------------------

def _wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def _message_page(title: str, message: str, status: int = 200):
    if _wants_json():
        from flask import jsonify

        response = jsonify({"status": "success" if status < 400 else "error", "message": message})
        response.status_code = status
        return response
    return _render("status/message.html", status=status, title=title, message=message)


def _subscription_error(exc):
    if _wants_json():
        raise exc.for_api("Subscription")
    return _message_page("Subscription", str(exc), exc.status)


@bp.post("/status/subscribe")
@limiter.limit("10/hour", scope="status-subscribe")
def subscribe():
    from .incidents import IncidentError
    from .subscribers import subscribe_email

    # The one parameter layer: deep JSON, NUL bytes and lone surrogates are refused before any query.
    address = request_params().get("email")
    try:
        subscribe_email(_settings(), address)
    except IncidentError as exc:
        return _subscription_error(exc)
    return _message_page("Check your inbox", "If that address can receive mail, a confirmation link is on its way. "
                         "Nothing more is sent until you confirm.", 202)


@bp.route("/status/subscriptions/<token>/confirm", methods=["GET", "POST"])
def confirm_subscription(token: str):
    from .incidents import IncidentError
    from .subscribers import by_token, confirm

    try:
        if request.method == "GET":  # a page with a button: link scanners must not confirm
            row = by_token(token)
            return _render("status/confirm.html", address=row.address, action="confirm",
                           confirmed=row.confirmed_at is not None)
        row = confirm(token)
    except IncidentError as exc:
        return _subscription_error(exc)
    return _message_page("Subscribed", f"{row.address} will now hear of incidents and maintenance.")


@bp.route("/status/subscriptions/<token>/unsubscribe", methods=["GET", "POST"])
def unsubscribe_subscription(token: str):
    from .incidents import IncidentError
    from .subscribers import by_token, unsubscribe

    try:
        if request.method == "GET":
            row = by_token(token)
            return _render("status/confirm.html", address=row.address, action="unsubscribe",
                           confirmed=row.unsubscribed_at is not None)
        row = unsubscribe(token)  # also the RFC 8058 one-click POST from mail clients
    except IncidentError as exc:
        return _subscription_error(exc)
    return _message_page("Unsubscribed", f"{row.address} will get no more mail from this status page.")


def register(app) -> None:
    app.register_blueprint(bp)
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["impact_words"] = lambda impact: IMPACT_WORDS.get(impact, impact)
    if not any(rule.rule == "/" for rule in app.url_map.iter_rules()):
        app.add_url_rule("/", "status_root", status_page)


def _gateway_error(exc: GatewayError):
    """A bad page number or an unknown incident: an HTML page for people, JSON for programs."""
    from ..gateway.envelope import failure

    if _wants_json():
        return failure(exc)
    return _render("status/message.html", status=exc.status, title="Not found" if exc.status == 404 else "Error",
                   message=exc.message)


bp.register_error_handler(GatewayError, _gateway_error)


def when(value) -> str:
    """A datetime or ISO-8601 string as people read it: 2026-11-30 13:05 UTC."""
    from ..timeutil import parse_iso

    if not value:
        return ""
    return f"{as_utc(parse_iso(value) if isinstance(value, str) else value):%Y-%m-%d %H:%M} UTC"
