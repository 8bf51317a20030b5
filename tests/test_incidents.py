"""Incidents: lifecycle through the API, component statuses they declare, Statuspage JSON, and
incidents opened and closed by alert rules."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from controlplane.alerting.engine import evaluate
from tests.conftest import new_key
from tests.test_status_components import store, store_results


@pytest.fixture
def operator(app):
    store_results(app)
    return app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}


def components(client) -> dict:
    return {c["id"]: c["status"] for c in client.get("/api/v2/components.json").get_json()["components"]}


def test_the_incident_lifecycle_and_the_components_it_declares(operator):
    client, headers = operator
    created = client.post("/api/v1/incidents", json={
        "name": "Mail is delayed", "body": "Postal queues are backing up.", "impact": "major",
        "components": {"delivery": "partial_outage"}}, headers=headers)
    assert created.status_code == 201
    incident = created.get_json()["data"]
    assert incident["status"] == "investigating" and incident["impact"] == "major"
    assert incident["incident_updates"][0]["affected_components"] == [
        {"code": "delivery", "name": "Mail delivery", "old_status": "operational", "new_status": "partial_outage"}]
    assert components(client)["delivery"] == "partial_outage"
    assert client.get("/api/v2/status.json").get_json()["status"]["indicator"] == "minor"
    for status in ("identified", "monitoring"):
        answer = client.post(f"/api/v1/incidents/{incident['id']}/updates",
                             json={"status": status, "body": f"now {status}"}, headers=headers)
        assert answer.status_code == 200
    resolved = client.post(f"/api/v1/incidents/{incident['id']}/updates",
                           json={"status": "resolved", "body": "Delivered the backlog."}, headers=headers).get_json()
    updates = resolved["data"]["incident_updates"]
    assert [u["status"] for u in updates] == ["resolved", "monitoring", "identified", "investigating"]  # newest first
    assert updates[0]["affected_components"][0]["new_status"] == "operational"
    assert components(client)["delivery"] == "operational"
    with_postmortem = client.put(f"/api/v1/incidents/{incident['id']}/postmortem", json={"body": "Root cause: disk."},
                                 headers=headers).get_json()["data"]
    assert with_postmortem["postmortem_body"] == "Root cause: disk."
    assert with_postmortem["status"] == "postmortem"  # Statuspage's status once a postmortem is out
    assert with_postmortem["monitoring_at"] == updates[1]["created_at"]


@pytest.mark.parametrize("payload,status,message", [
    ({"name": "x", "body": "y", "components": {"moon": "major_outage"}}, 422, "unknown component 'moon'"),
    ({"name": "x", "body": "y", "components": {"api": "on_fire"}}, 422, "status must be one of"),
    ({"name": "x", "body": "y", "status": "panicking"}, 422, "status must be one of"),
    ({"name": "x", "body": "y", "impact": "apocalyptic"}, 422, "impact must be one of"),
    ({"name": "x"}, 422, "body is required"),
    ({"name": "x", "body": "y" * 10_001}, 413, "longer than 10000"),
])
def test_bad_incidents_are_refused_with_clear_errors(operator, payload, status, message):
    client, headers = operator
    answer = client.post("/api/v1/incidents", json=payload, headers=headers)
    assert answer.status_code == status and message in answer.get_json()["data"]["message"]


def test_invalid_transitions_and_permissions(operator, app):
    client, headers = operator
    incident_id = client.post("/api/v1/incidents", json={"name": "n", "body": "b", "status": "monitoring"},
                              headers=headers).get_json()["data"]["id"]
    back = client.post(f"/api/v1/incidents/{incident_id}/updates", json={"status": "investigating", "body": "b"},
                       headers=headers)
    assert back.status_code == 422 and "cannot go back" in back.get_json()["data"]["message"]
    client.post(f"/api/v1/incidents/{incident_id}/updates", json={"status": "resolved", "body": "b"}, headers=headers)
    after = client.post(f"/api/v1/incidents/{incident_id}/updates", json={"status": "resolved", "body": "b"},
                        headers=headers)
    assert after.status_code == 422 and "add a postmortem" in after.get_json()["data"]["message"]
    assert client.post("/api/v1/incidents/999/updates", json={"status": "resolved", "body": "b"},
                       headers=headers).status_code == 404
    assert client.post("/api/v1/incidents", json={"name": "n", "body": "b"}).status_code == 401
    reader = {"X-Server-API-Key": new_key(app, "read")}
    assert client.post("/api/v1/incidents", json={"name": "n", "body": "b"}, headers=reader).status_code == 403


def test_incident_json_is_statuspage_shaped_and_text_stays_text(operator):
    client, headers = operator
    client.post("/api/v1/incidents", json={"name": "<b>API</b> errors", "body": "<script>alert(1)</script>"},
                headers=headers)
    summary = client.get("/api/v2/summary.json").get_json()
    assert set(summary) == {"page", "status", "components", "incidents", "scheduled_maintenances"}
    (incident,) = summary["incidents"]
    assert {"id", "name", "status", "impact", "created_at", "updated_at", "resolved_at", "page_id",
            "incident_updates"} <= set(incident)
    assert incident["name"] == "<b>API</b> errors"  # JSON carries the text as text; pages escape it
    assert incident["incident_updates"][0]["body"] == "<script>alert(1)</script>"
    assert client.get("/api/v2/incidents/unresolved.json").get_json()["incidents"][0]["id"] == incident["id"]
    assert len(client.get("/api/v2/incidents.json").get_json()["incidents"]) == 1


PUBLIC_TITLE = "Email delivery delayed"
PUBLIC_TEXT = "Messages you send are queued and will be delivered once the issue is resolved."
INTERNAL = ("live worker", "threshold", "NoLiveWorker", "heartbeat", "critical")


def test_alert_rules_that_ask_open_and_close_incidents_in_public_words(make_app, tmp_path):
    from sqlalchemy import select

    from controlplane.extensions import db
    from controlplane.status.models import Incident, IncidentUpdate

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [{
        "name": "NoLiveWorker", "indicator": "live_workers", "params": {"startup_grace": "0s"}, "op": "<",
        "threshold": 1, "for": "0s", "labels": {"severity": "critical"},
        "annotations": {"summary": "{value:.0f} live worker(s) (threshold {threshold:g})",
                        "description": "No heartbeat: delivery has stopped.",
                        "public_title": PUBLIC_TITLE, "public_description": PUBLIC_TEXT},
        "status_component": "delivery", "open_incident": True}]}))
    app = make_app(ALERT_RULES_FILE=str(rules))
    store_results(app)
    settings, rule_set = app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"]
    now = datetime.now(timezone.utc)
    with app.app_context():
        evaluate(settings, rule_set, now)  # no worker: fires
    client = app.test_client()
    (incident,) = client.get("/api/v2/incidents/unresolved.json").get_json()["incidents"]
    assert incident["automatic"] is True and "alert_rule" not in incident  # the rule's name is internal
    assert incident["name"] == PUBLIC_TITLE and incident["impact"] == "major"  # a critical page: one component out
    assert [u["body"] for u in incident["incident_updates"]] == [PUBLIC_TEXT]
    assert components(client)["delivery"] == "major_outage"
    page = client.get("/status").get_data(as_text=True)
    assert PUBLIC_TITLE in page and PUBLIC_TEXT in page and "Major disruption" in page
    with app.app_context():
        from controlplane.jobs.models import WorkerHeartbeat

        db.session.add(WorkerHeartbeat(instance="w", hostname="h", pid=1, version="v", started_at=now,
                                       last_seen_at=datetime.now(timezone.utc), is_leader=True))
        db.session.commit()
        evaluate(settings, rule_set, now + timedelta(seconds=15))  # resolves
        stored = [(i.name, u.body) for i, u in db.session.execute(
            select(Incident, IncidentUpdate).join(IncidentUpdate, IncidentUpdate.incident_id == Incident.id)).all()]
    assert client.get("/api/v2/incidents/unresolved.json").get_json()["incidents"] == []
    resolved = client.get("/api/v2/incidents.json").get_json()["incidents"][0]
    assert resolved["status"] == "resolved"
    assert resolved["incident_updates"][0]["body"] == "This incident has been resolved and the service is operating normally."
    assert components(client)["delivery"] == "operational"
    # Neither the rows, the page, the incident's own page nor the JSON carry the internal text.
    incident_page = client.get(f"/incidents/{incident['id']}").get_data(as_text=True)
    statuspage = client.get("/api/v2/incidents.json").get_json()["incidents"]
    words = [str(item) for item in statuspage]
    for text in (" ".join(f"{name} {body}" for name, body in stored), page, incident_page, *words):
        assert not [word for word in INTERNAL if word in text], text


@pytest.mark.parametrize("annotations,message", [
    ({"summary": "s"}, "annotations.public_title: required for a rule with open_incident"),
    ({"summary": "s", "public_title": "API errors"}, "annotations.public_description: required"),
    ({"summary": "s", "public_title": "Errors at {value:.0%}", "public_description": "d"},
     "annotations.public_title: public text takes no placeholders"),
])
def test_a_rule_that_opens_incidents_needs_public_words(annotations, message):
    from controlplane.alerting.rules import RulesError, parse_rules

    with pytest.raises(RulesError) as error:
        parse_rules({"rules": [{"name": "Errors", "indicator": "http_error_ratio", "op": ">", "threshold": 0.01,
                                "labels": {"severity": "critical"}, "annotations": annotations,
                                "open_incident": True}]})
    assert f"rule 'Errors'.{message}" in str(error.value)


def test_the_shipped_rules_that_open_incidents_speak_to_customers():
    from pathlib import Path

    from controlplane.alerting.rules import load_rules

    rules = load_rules(Path(__file__).resolve().parent.parent / "alerts" / "rules.yaml")
    opening = [rule for rule in rules.rules if rule.open_incident]
    assert {rule.name for rule in opening} == {"HighErrorRate", "PostalUnreachable"}
    for rule in opening:
        public = rule.annotations["public_title"] + rule.annotations["public_description"]
        assert "%" not in public and "threshold" not in public and rule.name not in public


def test_scheduled_maintenance_transitions_with_the_clock_and_silences_alerts(operator, app):
    from controlplane.alerting.rules import parse_rules
    from controlplane.alerting.silences import silencing
    from controlplane.status.maintenance import maintenance_status
    from controlplane.status.models import Maintenance

    client, headers = operator
    now = datetime.now(timezone.utc)
    window = {"name": "PostgreSQL upgrade", "body": "Sends are queued meanwhile.", "components": ["delivery"],
              "scheduled_for": (now - timedelta(minutes=1)).isoformat(),
              "scheduled_until": (now + timedelta(hours=1)).isoformat()}
    created = client.post("/api/v1/maintenances", json=window, headers=headers)
    assert created.status_code == 201 and created.get_json()["data"]["status"] == "in_progress"
    assert components(client)["delivery"] == "under_maintenance"
    assert client.get("/api/v2/status.json").get_json()["status"]["indicator"] == "none"
    active = client.get("/api/v2/scheduled-maintenances/active.json").get_json()["scheduled_maintenances"]
    assert [m["name"] for m in active] == ["PostgreSQL upgrade"]
    (covered,) = client.get("/api/v2/summary.json").get_json()["scheduled_maintenances"][0]["components"]
    assert (covered["id"], covered["name"], covered["status"]) == ("delivery", "Mail delivery", "under_maintenance")
    rule = parse_rules({"rules": [{"name": "PostalUnreachable", "indicator": "check_unhealthy",
                                   "params": {"check": "postal"}, "op": ">", "threshold": 0,
                                   "labels": {"severity": "critical"}, "annotations": {"summary": "s"},
                                   "status_component": "delivery"}]}).rules[0]
    with app.app_context():
        assert silencing(rule, now) is not None  # its component is under maintenance
        row = Maintenance(scheduled_for=now + timedelta(hours=1), scheduled_until=now + timedelta(hours=2))
        assert [maintenance_status(row, now + timedelta(minutes=m)) for m in (0, 90, 150)] == [
            "scheduled", "in_progress", "completed"]
    upcoming = dict(window, scheduled_for=(now + timedelta(days=1)).isoformat(),
                    scheduled_until=(now + timedelta(days=1, hours=1)).isoformat())
    later_id = client.post("/api/v1/maintenances", json=upcoming, headers=headers).get_json()["data"]["id"]
    assert [m["id"] for m in client.get("/api/v2/scheduled-maintenances/upcoming.json").get_json()[
        "scheduled_maintenances"]] == [later_id]
    assert client.delete(f"/api/v1/maintenances/{later_id}", headers=headers).get_json()["data"]["status"] == "completed"
    for bad in (dict(window, components=["moon"]), dict(window, components=[]),
                dict(window, scheduled_until=window["scheduled_for"]),
                dict(window, scheduled_until=(now + timedelta(days=9)).isoformat()),
                dict(window, scheduled_for="tomorrow")):
        assert client.post("/api/v1/maintenances", json=bad, headers=headers).status_code == 422
    refused = client.post("/api/v1/maintenances", json=dict(window, components=["moon"]), headers=headers)
    assert refused.get_json()["error"] == "InvalidMaintenance"
    missing = client.delete("/api/v1/maintenances/9999", headers=headers)
    assert missing.status_code == 404 and missing.get_json()["error"] == "MaintenanceNotFound"


def test_feeds_are_xml_with_escaped_incident_text(operator):
    import xml.etree.ElementTree as ET

    client, headers = operator
    client.post("/api/v1/incidents", json={"name": "<b>API</b> & friends", "body": "<script>x</script>"},
                headers=headers)
    atom = client.get("/history.atom")
    assert atom.status_code == 200 and atom.mimetype == "application/atom+xml" and atom.headers["ETag"]
    assert b"&lt;b&gt;API&lt;/b&gt; &amp; friends" in atom.data and b"<script>" not in atom.data
    feed = ET.fromstring(atom.data)
    entries = feed.findall("{http://www.w3.org/2005/Atom}entry")
    assert entries[0].find("{http://www.w3.org/2005/Atom}title").text == "<b>API</b> & friends"
    rss = ET.fromstring(client.get("/history.rss").data)
    assert rss.find("channel/item/title").text == "<b>API</b> & friends"
    assert rss.find("channel/item/pubDate").text.endswith(" GMT")


def test_badges_are_svg_for_status_and_uptime(operator, app):
    import xml.etree.ElementTree as ET

    client, headers = operator
    status = client.get("/badges/api.svg")
    assert status.mimetype == "image/svg+xml"
    svg = ET.fromstring(status.data)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and "operational" in svg.get("aria-label")
    for state in ("healthy", "healthy", "unhealthy"):  # the postal check (delivery): 3 of 4 up
        store(app, {"postal": state})
    uptime = ET.fromstring(client.get("/badges/delivery/uptime.svg?days=7").data)
    assert uptime.get("aria-label") == "uptime 7d: 75.00%"
    assert client.get("/badges/moon.svg").status_code == 404
    assert client.get("/badges/api/uptime.svg?days=365").status_code == 422
