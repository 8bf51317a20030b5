"""Every object of every /api/v2 document, field by field, against Atlassian Statuspage's published
v2 schema (the public "Status API" of any Statuspage page, e.g. status.atlassian.com/api: summary,
status, components, incidents, incidents/unresolved, scheduled-maintenances, .../upcoming,
.../active). A field is (name, type); the types are JSON's, timestamps ISO-8601 with an offset."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from controlplane.timeutil import utcnow
from tests.conftest import new_key
from tests.test_status_components import store_results

PAGE_URL = "https://status.mailgoat.example"


class Timestamp:
    """An ISO-8601 date-time with a UTC offset (or Z)."""


class Day:
    """An ISO-8601 calendar date (component start_date)."""


def one_of(*values):
    return frozenset(values)


COMPONENT_STATUSES = one_of("operational", "degraded_performance", "partial_outage", "major_outage",
                            "under_maintenance")
INCIDENT_STATUSES = one_of("investigating", "identified", "monitoring", "resolved", "postmortem")
MAINTENANCE_STATUSES = one_of("scheduled", "in_progress", "verifying", "completed")

PAGE = {"id": str, "name": str, "url": str, "time_zone": str, "updated_at": Timestamp}
STATUS = {"indicator": one_of("none", "minor", "major", "critical"), "description": str}
COMPONENT = {"id": str, "name": str, "status": COMPONENT_STATUSES, "created_at": Timestamp, "updated_at": Timestamp,
             "position": int, "description": (str, None), "showcase": bool, "start_date": (Day, None),
             "group_id": (str, None), "page_id": str, "group": bool, "only_show_if_degraded": bool}
GROUP_COMPONENT = {**COMPONENT, "components": [str]}
AFFECTED_COMPONENT = {"code": str, "name": str, "old_status": COMPONENT_STATUSES, "new_status": COMPONENT_STATUSES}
INCIDENT_UPDATE = {"id": str, "status": str, "body": str, "incident_id": str, "created_at": Timestamp,
                   "updated_at": Timestamp, "display_at": Timestamp,
                   "affected_components": ([AFFECTED_COMPONENT], None), "deliver_notifications": bool,
                   "custom_tweet": (str, None), "tweet_id": (str, None)}
INCIDENT = {"id": str, "name": str, "status": INCIDENT_STATUSES, "created_at": Timestamp, "updated_at": Timestamp,
            "monitoring_at": (Timestamp, None), "resolved_at": (Timestamp, None),
            "impact": one_of("none", "minor", "major", "critical"), "shortlink": str, "started_at": Timestamp,
            "page_id": str, "incident_updates": [INCIDENT_UPDATE], "components": [COMPONENT]}
MAINTENANCE = {**INCIDENT, "status": MAINTENANCE_STATUSES,
               "impact": one_of("none", "minor", "major", "critical", "maintenance"),
               "scheduled_for": Timestamp, "scheduled_until": Timestamp}
# Ours, beyond Atlassian's: named here so a misspelt field cannot pass as an extra.
EXTRAS = {"incident": {"postmortem_body", "automatic"}, "maintenance": {"body"}, "": set()}

DOCUMENTS = {
    "/api/v2/status.json": {"page": PAGE, "status": STATUS},
    "/api/v2/summary.json": {"page": PAGE, "status": STATUS, "components": [COMPONENT], "incidents": [INCIDENT],
                             "scheduled_maintenances": [MAINTENANCE]},
    "/api/v2/components.json": {"page": PAGE, "components": [COMPONENT]},
    "/api/v2/incidents.json": {"page": PAGE, "incidents": [INCIDENT]},
    "/api/v2/incidents/unresolved.json": {"page": PAGE, "incidents": [INCIDENT]},
    "/api/v2/scheduled-maintenances.json": {"page": PAGE, "scheduled_maintenances": [MAINTENANCE]},
    "/api/v2/scheduled-maintenances/upcoming.json": {"page": PAGE, "scheduled_maintenances": [MAINTENANCE]},
    "/api/v2/scheduled-maintenances/active.json": {"page": PAGE, "scheduled_maintenances": [MAINTENANCE]},
}


def _matches(value, kind) -> bool:
    if isinstance(kind, tuple):
        return any(_matches(value, k) for k in kind)
    if kind is None:
        return value is None
    if kind is Timestamp:
        return isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    if kind is Day:
        return isinstance(value, str) and date.fromisoformat(value) is not None
    if isinstance(kind, frozenset):
        return value in kind
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(kind, type):
        return isinstance(value, kind)
    return isinstance(value, (list, dict))  # containers: checked by _check


def _check(value, kind, where: str, problems: list[str]) -> None:
    if isinstance(kind, tuple):  # nullable container
        if value is None and None in kind:
            return
        kind = next(k for k in kind if k is not None)
    if isinstance(kind, list):
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {value!r}")
            return
        for index, item in enumerate(value):
            _check(item, kind[0], f"{where}[{index}]", problems)
        return
    if isinstance(kind, dict):
        _check_object(value, kind, where, problems)
        return
    if not _matches(value, kind):
        problems.append(f"{where}: {value!r} is not {getattr(kind, '__name__', kind)}")


def _check_object(value, schema: dict, where: str, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where}: expected an object, got {value!r}")
        return
    if schema is COMPONENT and value.get("group") is True:
        schema = GROUP_COMPONENT
    allowed = set(schema) | EXTRAS["maintenance" if "scheduled_for" in schema else
                                    "incident" if "incident_updates" in schema else ""]
    for name in sorted(set(schema) - set(value)):
        problems.append(f"{where}.{name}: missing")
    for name in sorted(set(value) - allowed):
        problems.append(f"{where}.{name}: not in the schema")
    for name, kind in schema.items():
        if name in value:
            _check(value[name], kind, f"{where}.{name}", problems)


@pytest.fixture
def populated(make_app):
    """A page with every kind of object: open, monitoring and resolved-with-postmortem incidents,
    and active, upcoming, completed and cancelled maintenance."""
    app = make_app(STATUS_PAGE_URL=PAGE_URL, STATUS_CACHE_SECONDS="0")
    store_results(app, unhealthy=("postal",))
    client, headers = app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}

    def post(path, body):
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code in (200, 201), answer.get_json()
        return answer.get_json()["data"]

    open_one = post("/api/v1/incidents", {"name": "Slow sends", "body": "Looking", "impact": "major",
                                          "components": {"api": "degraded_performance"}})
    post(f"/api/v1/incidents/{open_one['id']}/updates", {"status": "monitoring", "body": "Watching",
                                                         "components": {"delivery": "partial_outage"}})
    closed = post("/api/v1/incidents", {"name": "Old", "body": "b"})
    post(f"/api/v1/incidents/{closed['id']}/updates", {"status": "resolved", "body": "Fixed"})
    client.put(f"/api/v1/incidents/{closed['id']}/postmortem", json={"body": "Root cause"}, headers=headers)
    now = utcnow()
    window = [("active", -1, 1), ("upcoming", 1, 2), ("done", -3, -2)]
    for name, start, end in window:
        post("/api/v1/maintenances", {"name": name, "body": f"{name} work", "components": ["delivery"],
                                      "scheduled_for": (now + timedelta(hours=start)).isoformat(),
                                      "scheduled_until": (now + timedelta(hours=end)).isoformat()})
    cancelled = post("/api/v1/maintenances", {"name": "cancelled", "body": "b", "components": ["api"],
                                              "scheduled_for": (now + timedelta(hours=3)).isoformat(),
                                              "scheduled_until": (now + timedelta(hours=4)).isoformat()})
    client.delete(f"/api/v1/maintenances/{cancelled['id']}", headers=headers)
    return app, client, open_one


@pytest.mark.parametrize("path", sorted(DOCUMENTS))
def test_every_object_matches_atlassians_v2_schema_field_by_field(populated, path):
    app, client, _ = populated
    answer = client.get(path)
    assert answer.status_code == 200
    problems: list[str] = []
    _check_object(answer.get_json(), DOCUMENTS[path], path, problems)
    assert problems == []


def test_the_populated_page_really_holds_every_kind_of_object(populated):
    """So the schema test above checks something: no empty list passes it by default."""
    app, client, _ = populated
    summary = client.get("/api/v2/summary.json").get_json()
    assert summary["incidents"] and summary["scheduled_maintenances"]
    assert any(c["group"] for c in summary["components"]) and any(not c["group"] for c in summary["components"])
    maintenances = client.get("/api/v2/scheduled-maintenances.json").get_json()["scheduled_maintenances"]
    assert {m["status"] for m in maintenances} == {"in_progress", "scheduled", "completed"}
    incidents = client.get("/api/v2/incidents.json").get_json()["incidents"]
    assert {i["status"] for i in incidents} == {"monitoring", "postmortem"}


def test_an_incident_carries_the_full_objects_of_the_components_it_affects(populated):
    app, client, open_one = populated
    summary = client.get("/api/v2/summary.json").get_json()
    (incident,) = summary["incidents"]
    components = {c["id"]: c for c in summary["components"]}
    assert incident["components"] == [components["api"], components["delivery"]]
    assert incident["shortlink"] == f"{PAGE_URL}/incidents/{open_one['id']}"
    assert incident["started_at"] == incident["created_at"] and incident["page_id"] == summary["page"]["id"]
    assert [u["status"] for u in incident["incident_updates"]] == ["monitoring", "investigating"]
    assert incident["monitoring_at"] == incident["incident_updates"][0]["created_at"]


def test_a_maintenance_carries_its_window_updates_and_full_components(populated):
    app, client, _ = populated
    summary = client.get("/api/v2/summary.json").get_json()
    components = {c["id"]: c for c in summary["components"]}
    active = next(m for m in summary["scheduled_maintenances"] if m["status"] == "in_progress")
    assert active["components"] == [components["delivery"]]
    assert components["delivery"]["status"] == "under_maintenance"
    assert [u["status"] for u in active["incident_updates"]] == ["in_progress", "scheduled"]
    assert active["started_at"] == active["scheduled_for"] and active["resolved_at"] is None
    assert active["shortlink"] == f"{PAGE_URL}/status"
    done = next(m for m in client.get("/api/v2/scheduled-maintenances.json").get_json()["scheduled_maintenances"]
                if m["name"] == "done")
    assert [u["status"] for u in done["incident_updates"]] == ["completed", "in_progress", "scheduled"]
    assert done["resolved_at"] == done["scheduled_until"]
