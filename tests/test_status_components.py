"""Component status rules, the page indicator, and the Statuspage-compatible JSON."""
from __future__ import annotations

import time

import pytest

from controlplane.health.config import parse_checks
from controlplane.health.runner import CheckOutcome
from controlplane.status.components import component_statuses, page_indicator
from controlplane.timeutil import utcnow
from tests.conftest import POSTAL_DOWN, serve_traffic

CONFIG = {
    "components": {"api": {"name": "API", "group": "Core", "traffic": True},
                   "delivery": {"name": "Delivery", "group": "Core"}},
    "checks": {"database": {"kind": "database", "hard": True, "component": "api"},
               "redis": {"kind": "redis", "component": "api"},
               "postal": {"kind": "postal", "component": "delivery"}},
}


def outcome(name, status, message="m"):
    return CheckOutcome(name, status, None, None, 1.0, utcnow(), message)


def store_results(app, unhealthy: tuple[str, ...] = (), at=None) -> None:
    """Check results stored the way the worker stores them, read back through the health cache."""
    health = app.extensions["controlplane.health"]
    store(app, {spec.name: "unhealthy" if spec.name in unhealthy else "healthy" for spec in health.specs}, at)
    health.cache.refresh()


def store(app, statuses: dict[str, str], at=None) -> None:
    from controlplane.health.runner import CheckOutcome, store_outcomes

    with app.app_context():
        store_outcomes([CheckOutcome(name, state, None, None, 1.0, at or utcnow(), "m")
                        for name, state in statuses.items()], "test")


def statuses(view, traffic=None):
    config = parse_checks(CONFIG, "test")
    return {s.id: s.status for s in component_statuses(config, view, traffic)}


@pytest.mark.parametrize("check,state,expected", [
    ("database", "unhealthy", "major_outage"),  # a hard check
    ("redis", "unhealthy", "partial_outage"),
    ("redis", "degraded", "degraded_performance"),
    ("redis", "unknown", "degraded_performance"),  # stale or never ran: we cannot vouch for it
    ("redis", "unconfigured", "operational"),
    ("redis", "healthy", "operational"),
])
def test_check_results_decide_a_components_status(check, state, expected):
    view = {"database": outcome("database", "healthy"), "redis": outcome("redis", "healthy"),
            "postal": outcome("postal", "healthy"), check: outcome(check, state)}
    assert statuses(view)["api"] == expected
    assert statuses(view)["delivery"] == "operational"


@pytest.mark.parametrize("traffic,expected", [
    ((100, 30, 0), "major_outage"), ((100, 6, 0), "partial_outage"), ((100, 2, 0), "degraded_performance"),
    ((100, 0, 10), "degraded_performance"), ((100, 0, 1), "operational"), ((10, 10, 10), "operational"),
])
def test_live_requests_decide_traffic_components_only(traffic, expected):
    view = {name: outcome(name, "healthy") for name in ("database", "redis", "postal")}
    result = statuses(view, traffic)
    assert result["api"] == expected and result["delivery"] == "operational"


def test_the_page_indicator_follows_the_components():
    def make(*kinds):
        from controlplane.status.components import ComponentStatus

        return [ComponentStatus(str(i), str(i), None, "", status=k) for i, k in enumerate(kinds)]

    assert page_indicator(make("operational", "operational")) == "none"
    assert page_indicator(make("operational", "degraded_performance")) == "minor"
    assert page_indicator(make("partial_outage", "operational")) == "minor"
    assert page_indicator(make("major_outage", "operational")) == "major"
    assert page_indicator(make("major_outage", "major_outage")) == "critical"


def test_status_json_is_statuspage_compatible_public_and_cacheable(app, client):
    store_results(app)
    answer = client.get("/api/v2/status.json")
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
    body = answer.get_json()
    assert set(body["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    assert body["status"] == {"indicator": "none", "description": "All Systems Operational"}
    assert answer.headers["ETag"] and answer.headers["Last-Modified"]
    again = client.get("/api/v2/status.json", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_components_json_lists_components_and_their_groups(app, client):
    store_results(app, unhealthy=("postal",))
    components = client.get("/api/v2/components.json").get_json()["components"]
    by_id = {c["id"]: c for c in components}
    fields = {"id", "name", "status", "created_at", "updated_at", "position", "description", "showcase",
              "start_date", "group_id", "page_id", "group", "only_show_if_degraded"}
    assert all(fields <= set(c) for c in components)
    assert by_id["delivery"]["status"] == "partial_outage" and by_id["api"]["status"] == "operational"
    core = by_id["group-core"]
    assert core["group"] is True and set(core["components"]) == {"api", "delivery"}
    assert core["status"] == "partial_outage"
    assert client.get("/api/v2/status.json").get_json()["status"]["indicator"] == "minor"


def test_real_5xx_traffic_degrades_the_api_component(make_app):
    app = make_app(**POSTAL_DOWN)
    store_results(app)
    serve_traffic(app, ok=30, failing=10)
    app.extensions["controlplane.request_stats"].flush()
    api = {c["id"]: c for c in app.test_client().get("/api/v2/components.json").get_json()["components"]}["api"]
    assert api["status"] == "major_outage"  # 10 of 40 requests failed: 25%


def test_component_times_are_stored_not_the_time_of_the_request(make_app):
    """created_at is when the page first showed the component; updated_at moves when its status does."""
    app = make_app(STATUS_CACHE_SECONDS="0")
    store_results(app)
    client = app.test_client()

    def components():
        return {c["id"]: c for c in client.get("/api/v2/components.json").get_json()["components"]}

    first = components()
    time.sleep(0.05)
    store_results(app)  # newer check results, same statuses
    again = components()
    for component_id, component in first.items():
        assert again[component_id]["created_at"] == component["created_at"], component_id
        assert again[component_id]["updated_at"] == component["updated_at"], component_id
        assert component["start_date"] == component["created_at"][:10]
    time.sleep(0.05)
    store_results(app, unhealthy=("postal",))
    changed = components()
    assert changed["delivery"]["status"] != "operational"
    assert changed["delivery"]["updated_at"] > first["delivery"]["updated_at"]
    assert changed["delivery"]["created_at"] == first["delivery"]["created_at"]
    assert changed["api"]["updated_at"] == first["api"]["updated_at"]


def test_component_times_are_shared_by_every_process_through_the_database(make_app):
    app = make_app(STATUS_CACHE_SECONDS="0")
    store_results(app)
    created = {c["id"]: c["created_at"] for c in app.test_client().get("/api/v2/components.json").get_json()["components"]}
    other = make_app(migrate=False, STATUS_CACHE_SECONDS="0")
    other.extensions["controlplane.health"].cache.refresh()
    seen = {c["id"]: c["created_at"] for c in other.test_client().get("/api/v2/components.json").get_json()["components"]}
    assert seen == created
