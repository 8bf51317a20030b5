"""Status subscribers: email double opt-in through our gateway, webhooks, exactly one notification
per subscriber per incident create/update/resolve and per maintenance start and end."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from controlplane.extensions import db
from controlplane.gateway.models import Message
from controlplane.status.models import StatusNotification, Subscriber
from controlplane.timeutil import utcnow
from tests.conftest import new_key
from tests.test_status_components import store_results




@pytest.fixture
def status_app(make_app):
    app = make_app(STATUS_PAGE_URL="https://status.example.com", STATUS_EMAIL_FROM="status@mailgoat.dev",
                   WEBHOOK_ALLOW_PRIVATE_TARGETS="true")  # the receiver double listens on 127.0.0.1
    store_results(app)
    return app


def run_job(app) -> None:
    """The leader's status-notify job, as the worker runs it."""
    from controlplane.jobs import _notify_subscribers
    from controlplane.outbound import http_client

    settings = app.extensions["controlplane.settings"]
    with app.app_context(), http_client(app, 5) as http:
        _notify_subscribers(SimpleNamespace(settings=settings, webhook_http=http, app=app,
                                            scheduler=SimpleNamespace(running=False)))


def mails(app, to: str) -> list[dict]:
    with app.app_context():
        rows = db.session.execute(select(Message).where(Message.tag == "status").order_by(Message.id)).scalars()
        return [json.loads(m.params) for m in rows if json.loads(m.params)["to"] == [to]]


def subscribe(app, address: str) -> str:
    """Subscribe through the page's form and confirm through the mailed link; returns the token."""
    client = app.test_client()
    answer = client.post("/status/subscribe", data={"email": address})
    assert answer.status_code == 202 and b"Check your inbox" in answer.data
    (confirmation,) = mails(app, address.lower())
    token = re.search(r"/status/subscriptions/([\w-]+)/confirm", confirmation["plain_body"]).group(1)
    assert client.post(f"/status/subscriptions/{token}/confirm").status_code == 200
    return token


def operator(app):
    return app.test_client(), {"X-Server-API-Key": new_key(app, "admin")}


def test_double_opt_in_goes_through_our_gateway(status_app):
    client = status_app.test_client()
    answer = client.post("/status/subscribe", json={"email": "Ada@Example.com"})
    assert answer.status_code == 202 and answer.get_json()["status"] == "success"
    (mail,) = mails(status_app, "ada@example.com")
    assert mail["from"] == "status@mailgoat.dev" and "Confirm your subscription" in mail["subject"]
    link = re.search(r"https://status\.example\.com/status/subscriptions/([\w-]+)/confirm", mail["plain_body"])
    assert link and mail["headers"]["List-Unsubscribe"].startswith("<https://status.example.com/status/subscriptions/")
    # Asking again within 10 minutes sends nothing more (and says the same thing).
    assert client.post("/status/subscribe", data={"email": "ada@example.com"}).status_code == 202
    assert len(mails(status_app, "ada@example.com")) == 1
    # Following the link (as a mail scanner would) only shows a button.
    token = link.group(1)
    shown = client.get(f"/status/subscriptions/{token}/confirm")
    assert shown.status_code == 200 and b"Confirm subscription</button>" in shown.data
    with status_app.app_context():
        assert db.session.execute(select(Subscriber)).scalar_one().confirmed_at is None
    # Unconfirmed subscribers hear nothing of incidents.
    api, headers = operator(status_app)
    api.post("/api/v1/incidents", json={"name": "Early", "body": "b"}, headers=headers)
    run_job(status_app)
    assert len(mails(status_app, "ada@example.com")) == 1
    assert client.post(f"/status/subscriptions/{token}/confirm").status_code == 200
    with status_app.app_context():
        assert db.session.execute(select(Subscriber)).scalar_one().confirmed_at is not None


def test_each_subscriber_hears_of_each_incident_update_exactly_once(status_app, receiver):
    subscribe(status_app, "one@example.com")
    subscribe(status_app, "two@example.com")
    api, headers = operator(status_app)
    hook = api.post("/api/v1/subscribers", json={"url": receiver.url, "secret": "s" * 24}, headers=headers)
    assert hook.status_code == 201 and hook.get_json()["data"]["secret"] == "s" * 24
    incident = api.post("/api/v1/incidents", json={"name": "Mail is slow", "body": "Looking",
                                                   "components": {"delivery": "degraded_performance"}},
                        headers=headers).get_json()["data"]
    run_job(status_app)
    run_job(status_app)  # a second run (or a restarted leader) sends nothing again
    api.post(f"/api/v1/incidents/{incident['id']}/updates", json={"status": "identified", "body": "Found it"},
             headers=headers)
    api.post(f"/api/v1/incidents/{incident['id']}/updates", json={"status": "resolved", "body": "Fixed"},
             headers=headers)
    run_job(status_app)
    run_job(status_app)
    for address in ("one@example.com", "two@example.com"):
        updates = mails(status_app, address)[1:]  # after the confirmation
        assert [m["subject"] for m in updates] == [
            "[MailGoat status] New incident: Mail is slow", "[MailGoat status] Update: Mail is slow",
            "[MailGoat status] Resolved: Mail is slow"]
        assert all("Unsubscribe: https://status.example.com/status/subscriptions/" in m["plain_body"] for m in updates)
        assert "Mail delivery: degraded performance" in updates[0]["plain_body"]
        assert updates[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    bodies = [json.loads(r["body"]) for r in receiver.received]
    assert [b["type"] for b in bodies] == ["incident.created", "incident.updated", "incident.resolved"]
    assert len({b["id"] for b in bodies}) == 3
    assert bodies[0]["incident"]["name"] == "Mail is slow" and bodies[2]["incident_update"]["body"] == "Fixed"
    first = receiver.received[0]
    expected = "sha256=" + hmac.new(b"s" * 24, first["body"], hashlib.sha256).hexdigest()
    assert first["headers"]["X-MailGoat-Signature"] == expected
    with status_app.app_context():
        states = db.session.execute(select(StatusNotification.state)).scalars().all()
    assert states == ["sent"] * 9


def test_subscribers_confirmed_later_do_not_get_earlier_news(status_app):
    api, headers = operator(status_app)
    api.post("/api/v1/incidents", json={"name": "Before you came", "body": "b"}, headers=headers)
    run_job(status_app)
    subscribe(status_app, "late@example.com")
    run_job(status_app)
    assert len(mails(status_app, "late@example.com")) == 1  # only the confirmation


def test_maintenance_start_and_end_are_announced_once(status_app, receiver):
    api, headers = operator(status_app)
    api.post("/api/v1/subscribers", json={"url": receiver.url}, headers=headers)
    now = utcnow()
    running = api.post("/api/v1/maintenances", json={
        "name": "Postal upgrade", "body": "Mail may queue", "components": ["delivery"],
        "scheduled_for": (now - timedelta(minutes=1)).isoformat(),
        "scheduled_until": (now + timedelta(hours=1)).isoformat()}, headers=headers).get_json()["data"]
    later = api.post("/api/v1/maintenances", json={
        "name": "Never happens", "body": "b", "components": ["api"],
        "scheduled_for": (now + timedelta(hours=2)).isoformat(),
        "scheduled_until": (now + timedelta(hours=3)).isoformat()}, headers=headers).get_json()["data"]
    run_job(status_app)
    run_job(status_app)
    assert [json.loads(r["body"])["type"] for r in receiver.received] == ["maintenance.started"]
    api.delete(f"/api/v1/maintenances/{running['id']}", headers=headers)  # ended early
    api.delete(f"/api/v1/maintenances/{later['id']}", headers=headers)  # cancelled before it began
    run_job(status_app)
    run_job(status_app)
    bodies = [json.loads(r["body"]) for r in receiver.received]
    assert [b["type"] for b in bodies] == ["maintenance.started", "maintenance.completed"]
    assert bodies[1]["scheduled_maintenance"]["name"] == "Postal upgrade"


def test_a_window_that_ends_on_its_own_is_announced_as_completed(status_app, receiver):
    from controlplane.status.models import Maintenance
    from controlplane.status.notify import fan_out, record_maintenance

    api, headers = operator(status_app)
    api.post("/api/v1/subscribers", json={"url": receiver.url}, headers=headers)
    now = utcnow()
    with status_app.app_context():
        db.session.add(Maintenance(name="Short", body="b", components='["api"]', author="t", created_at=now,
                                   scheduled_for=now - timedelta(minutes=10), scheduled_until=now + timedelta(minutes=5)))
        db.session.commit()
        assert record_maintenance(now) == 1
        assert record_maintenance(now + timedelta(minutes=6)) == 1
        assert record_maintenance(now + timedelta(minutes=7)) == 0
        assert fan_out(now + timedelta(minutes=7)) == 2


def test_unsubscribing_stops_mail_and_drops_what_was_queued(status_app):
    token = subscribe(status_app, "bye@example.com")
    client = status_app.test_client()
    shown = client.get(f"/status/subscriptions/{token}/unsubscribe")
    assert shown.status_code == 200 and b"Unsubscribe</button>" in shown.data
    api, headers = operator(status_app)
    api.post("/api/v1/incidents", json={"name": "Queued", "body": "b"}, headers=headers)
    from controlplane.status.notify import fan_out

    with status_app.app_context():
        fan_out(utcnow())  # queued for them, not sent yet
    # RFC 8058 one-click: the mail client POSTs to the List-Unsubscribe URL.
    assert client.post(f"/status/subscriptions/{token}/unsubscribe",
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200
    run_job(status_app)
    api.post("/api/v1/incidents", json={"name": "After", "body": "b"}, headers=headers)
    run_job(status_app)
    assert len(mails(status_app, "bye@example.com")) == 1  # the confirmation only
    with status_app.app_context():
        assert db.session.execute(select(StatusNotification.last_error)).scalars().all() == ["unsubscribed"]
    gone = client.get("/status/subscriptions/not-a-token/unsubscribe")
    assert gone.status_code == 404 and gone.mimetype == "text/html"
    assert client.post("/status/subscriptions/not-a-token/confirm", json={}).get_json()["error"] == "SubscriptionNotFound"


def test_webhooks_retry_transient_failures_and_give_up_on_refusals(status_app, receiver):
    api, headers = operator(status_app)
    api.post("/api/v1/subscribers", json={"url": receiver.url}, headers=headers)
    receiver.status = 503
    api.post("/api/v1/incidents", json={"name": "Flaky", "body": "b"}, headers=headers)
    run_job(status_app)
    with status_app.app_context():
        row = db.session.execute(select(StatusNotification)).scalar_one()
        assert (row.state, row.attempts) == ("pending", 1) and "503" in row.last_error
        row.next_attempt_at = utcnow()  # the backoff has passed
        db.session.commit()
    receiver.status = 200
    run_job(status_app)
    run_job(status_app)
    assert len(receiver.received) == 2  # one failed try, one delivery
    receiver.status = 410
    api.post("/api/v1/incidents", json={"name": "Gone", "body": "b"}, headers=headers)
    run_job(status_app)
    with status_app.app_context():
        states = db.session.execute(select(StatusNotification.state).order_by(StatusNotification.id)).scalars().all()
    assert states == ["sent", "failed"]


@pytest.mark.parametrize("payload,status,code", [
    ({"email": "not an address"}, 422, "InvalidSubscription"),
    ({"email": "x" * 400 + "@example.com"}, 422, "InvalidSubscription"),
    ({}, 422, "InvalidSubscription"),
])
def test_bad_subscriptions_get_clear_errors(status_app, payload, status, code):
    answer = status_app.test_client().post("/status/subscribe", json=payload)
    assert answer.status_code == status and answer.get_json()["error"] == code
    form = status_app.test_client().post("/status/subscribe", data={"email": "nope"})
    assert form.status_code == 422 and form.mimetype == "text/html" and b"email must be an email address" in form.data


def test_subscriber_api_needs_an_operator_and_checks_its_input(status_app, receiver):
    client = status_app.test_client()
    assert client.get("/api/v1/subscribers").status_code == 401
    assert client.post("/api/v1/subscribers", json={"url": receiver.url}).status_code == 401
    sender = {"X-Server-API-Key": new_key(status_app, "send")}
    assert client.get("/api/v1/subscribers", headers=sender).status_code == 403
    api, headers = operator(status_app)
    assert api.post("/api/v1/subscribers", json={"url": "ftp://x"}, headers=headers).status_code == 422
    assert api.post("/api/v1/subscribers", json={"url": receiver.url, "secret": "short"},
                    headers=headers).status_code == 422
    first = api.post("/api/v1/subscribers", json={"url": receiver.url}, headers=headers).get_json()["data"]
    again = api.post("/api/v1/subscribers", json={"url": receiver.url}, headers=headers)
    assert again.status_code == 409 and again.get_json()["error"] == "AlreadySubscribed"
    assert [s["address"] for s in api.get("/api/v1/subscribers", headers=headers).get_json()["data"]] == [receiver.url]
    assert api.delete(f"/api/v1/subscribers/{first['id']}", headers=headers).get_json()["data"]["state"] == "unsubscribed"
    assert api.delete("/api/v1/subscribers/999", headers=headers).status_code == 404


def test_private_webhook_targets_are_refused_in_production_rules(make_app):
    app = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS="false")
    api, headers = operator(app)
    answer = api.post("/api/v1/subscribers", json={"url": "http://127.0.0.1:9/hook"}, headers=headers)
    assert answer.status_code == 422 and "refused" in answer.get_json()["message"]


def test_the_subscribe_form_is_rate_limited_per_address(status_app):
    client = status_app.test_client()
    answers = [client.post("/status/subscribe", data={"email": f"u{n}@example.com"}).status_code for n in range(11)]
    assert answers[:10] == [202] * 10 and answers[10] == 429


def test_metrics_count_subscribers_and_notifications(status_app, receiver):
    api, headers = operator(status_app)
    api.post("/api/v1/subscribers", json={"url": receiver.url}, headers=headers)
    api.post("/status/subscribe", data={"email": "new@example.com"})
    receiver.status = 410
    api.post("/api/v1/incidents", json={"name": "x", "body": "b"}, headers=headers)
    run_job(status_app)
    text = api.get("/metrics").get_data(as_text=True)
    assert 'controlplane_status_subscribers{kind="webhook",state="confirmed"} 1.0' in text
    assert 'controlplane_status_subscribers{kind="email",state="unconfirmed"} 1.0' in text
    assert 'controlplane_status_notifications{state="failed"} 1.0' in text


def test_the_notifier_backlog_counts_our_delays_not_a_subscribers_dead_endpoint(status_app, receiver):
    from controlplane.alerting.indicators import INDICATORS
    from controlplane.status.notify import fan_out, notify_backlog_seconds

    subscribe(status_app, "ops@example.com")
    api, headers = operator(status_app)
    api.post("/api/v1/subscribers", json={"url": receiver.url}, headers=headers)
    api.post("/api/v1/incidents", json={"name": "x", "body": "b"}, headers=headers)
    later = utcnow() + timedelta(minutes=10)
    with status_app.app_context():
        assert 599 < notify_backlog_seconds(later) < 601  # not fanned out for 10 minutes
        fan_out(utcnow())
        assert 599 < notify_backlog_seconds(later) < 601  # the mail is due and not queued
    receiver.status = 503
    run_job(status_app)  # the mail is queued; the webhook fails and waits for its retry
    with status_app.app_context():
        assert notify_backlog_seconds(later) == 0.0  # the dead endpoint is not our backlog
        ctx = type("Ctx", (), {"now": later})()
        assert INDICATORS["status_notify_backlog_seconds"].measure({}, ctx) == 0.0
    assert "controlplane_status_notify_backlog_seconds 0.0" in api.get("/metrics").get_data(as_text=True)


def test_a_refusal_by_our_gateway_is_a_clear_error_not_a_retry_loop(status_app):
    """An operator restricted the status page's send key to another domain: the form says so,
    and notifications fail once instead of retrying forever."""
    from controlplane.gateway.models import ApiKey
    from controlplane.status.subscribers import SYSTEM_KEY_NAME

    subscribe(status_app, "ok@example.com")  # creates the system key, unrestricted
    with status_app.app_context():
        key = db.session.execute(select(ApiKey).where(ApiKey.name == SYSTEM_KEY_NAME)).scalar_one()
        key.allowed_from_domains = "elsewhere.example"
        db.session.commit()
    refused = status_app.test_client().post("/status/subscribe", json={"email": "new@example.com"})
    assert refused.status_code == 422 and "we cannot mail that address" in refused.get_json()["message"]
    with status_app.app_context():
        assert [s.address for s in db.session.execute(select(Subscriber)).scalars()] == ["ok@example.com"]
    api, headers = operator(status_app)
    api.post("/api/v1/incidents", json={"name": "x", "body": "b"}, headers=headers)
    run_job(status_app)
    with status_app.app_context():
        row = db.session.execute(select(StatusNotification)).scalar_one()
    assert (row.state, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("the gateway refused the mail: ")


def test_two_requests_for_one_new_address_mail_once(status_app):
    import threading

    barrier, answers = threading.Barrier(2), []

    def post():
        client = status_app.test_client()
        barrier.wait()
        answers.append(client.post("/status/subscribe", data={"email": "race@example.com"}).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [202, 202]
    assert len(mails(status_app, "race@example.com")) == 1
