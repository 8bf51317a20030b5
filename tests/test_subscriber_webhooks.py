"""Subscriber webhooks: CRUD as the Node CLI calls it, signed fan-out with retries, SSRF guard."""
import hashlib
import hmac
import json

import pytest

from controlplane.delivery import dispatch_due
from controlplane.events.fanout import fan_out
from controlplane.events.models import Webhook, WebhookDelivery
from controlplane.extensions import db
from controlplane.outbound import http_client
from controlplane.postal import postal_client
from tests.doubles.receiver import Receiver
from tests.conftest import new_key


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def hooked(make_app, tmp_path):
    app = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS="true", WEBHOOK_BACKOFF_SECONDS="0", WEBHOOK_MAX_ATTEMPTS="3",
                   WEBHOOK_DISABLE_AFTER_FAILURES="5", POSTAL_TRANSPORT="sink", SINK_DIR=str(tmp_path / "sink"))
    key = new_key(app, "send", name="k")
    settings = app.extensions["controlplane.settings"]

    def run_fan_out():
        with app.app_context(), http_client(app, 5) as http:
            total = 0
            while n := fan_out(settings, http):
                total += n
            db.session.remove()
            return total

    return app, app.test_client(), {"X-Server-API-Key": key}, run_fan_out


def send(client, headers):
    body = {"to": ["alice@example.com"], "from": "a@mailgoat.dev", "subject": "s", "plain_body": "b"}
    return client.post("/api/v1/send/message", json=body, headers=headers).get_json()


def test_create_list_delete_as_the_node_cli_does(hooked, receiver):
    app, client, headers, _ = hooked
    created = client.post("/api/v1/webhooks", json={"url": receiver.url, "name": "ops"}, headers=headers)
    assert created.status_code == 201
    data = created.get_json()["data"]
    assert {"id", "url", "name", "created_at", "last_used_at"} <= set(data) and len(data["secret"]) == 64
    listed = client.get("/api/v1/webhooks", headers=headers).get_json()["data"]
    assert [h["name"] for h in listed] == ["ops"] and "secret" not in listed[0]
    assert client.delete(f"/api/v1/webhooks/{data['id']}", headers=headers).status_code == 200
    assert client.get("/api/v1/webhooks", headers=headers).get_json()["data"] == []
    assert client.delete(f"/api/v1/webhooks/{data['id']}", headers=headers).status_code == 404


def test_events_are_delivered_signed_with_a_timestamp(hooked, receiver):
    app, client, headers, run_fan_out = hooked
    secret = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers).get_json()["data"]["secret"]
    sent = send(client, headers)
    with app.app_context():
        dispatch_due(app.extensions["controlplane.settings"], postal_client(app), "w")
    assert run_fan_out() == 2
    types = []
    for request in receiver.received:
        body = request["body"]
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert request["headers"]["X-MailGoat-Signature"] == expected
        assert request["headers"]["X-Postal-Signature"] == expected
        document = json.loads(body)
        assert document["timestamp"] == int(request["headers"]["X-MailGoat-Timestamp"])
        assert document["data"]["message_id"] == sent["message_id"]
        types.append(document["type"])
    assert types == ["message.queued", "message.sent"]


def test_event_filter(hooked, receiver):
    app, client, headers, run_fan_out = hooked
    client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["message.sent"]}, headers=headers)
    send(client, headers)
    assert run_fan_out() == 0  # message.queued is not wanted


def test_failures_are_retried_then_dead_and_a_streak_disables_the_hook(hooked, receiver):
    app, client, headers, run_fan_out = hooked
    hook_id = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers).get_json()["data"]["id"]
    receiver.status = 500
    send(client, headers)
    run_fan_out()
    with app.app_context():
        (delivery,) = db.session.query(WebhookDelivery).all()
        assert delivery.state == "dead" and delivery.attempts == 3 and delivery.last_status == 500
    send(client, headers)
    send(client, headers)
    run_fan_out()
    with app.app_context():
        hook = db.session.get(Webhook, hook_id)
        assert hook.enabled is False and "failed deliveries in a row" in hook.disabled_reason
    listed = client.get("/api/v1/webhooks", headers=headers).get_json()["data"]
    assert listed[0]["enabled"] is False


def test_success_resets_the_streak(hooked, receiver):
    app, client, headers, run_fan_out = hooked
    hook_id = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers).get_json()["data"]["id"]
    receiver.status = 503
    send(client, headers)
    with app.app_context():
        settings = app.extensions["controlplane.settings"]
        with http_client(app, 5) as http:
            fan_out(settings, http)
        assert db.session.get(Webhook, hook_id).failure_streak == 1
    receiver.status = 200
    run_fan_out()
    with app.app_context():
        hook = db.session.get(Webhook, hook_id)
        assert hook.failure_streak == 0 and hook.last_used_at is not None


def test_test_endpoint_sends_a_signed_test_event(hooked, receiver):
    app, client, headers, _ = hooked
    hook = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers).get_json()["data"]
    result = client.post("/api/v1/webhooks/test", json={"id": hook["id"]}, headers=headers).get_json()["data"]
    assert result["success"] is True and result["status_code"] == 200
    assert json.loads(receiver.received[-1]["body"])["type"] == "webhook.test"
    receiver.status = 404
    failed = client.post("/api/v1/webhooks/test", json={"url": receiver.url}, headers=headers).get_json()["data"]
    assert failed["success"] is False and failed["error"] == "HTTP 404"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://169.254.169.254/latest",
                                 "http://10.0.0.5/x", "http://[::1]/x", "ftp://example.com/x", "not a url",
                                 "http://user:pw@example.com/"])
def test_ssrf_guard_refuses_internal_targets(make_app, url):
    app = make_app()
    key = new_key(app, "send", name="k")
    response = app.test_client().post("/api/v1/webhooks", json={"url": url}, headers={"X-Server-API-Key": key})
    assert response.status_code == 422 and response.get_json()["data"]["code"] == "InvalidWebhookUrl"


def test_ssrf_guard_applies_at_send_time_too(hooked, receiver):
    app, client, headers, run_fan_out = hooked
    client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers)
    send(client, headers)
    app.extensions["controlplane.settings"].__dict__["webhook_allow_private_targets"] = False
    run_fan_out()
    with app.app_context():
        (delivery,) = db.session.query(WebhookDelivery).all()
        assert delivery.state == "dead" and delivery.last_error.startswith("refused:")
    assert receiver.received == []


def test_other_keys_cannot_see_or_delete_a_webhook(hooked, receiver, make_key):
    app, client, headers, _ = hooked
    hook_id = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers).get_json()["data"]["id"]
    other = new_key(app, "send", name="o")
    assert client.get("/api/v1/webhooks", headers={"X-Server-API-Key": other}).get_json()["data"] == []
    assert client.delete(f"/api/v1/webhooks/{hook_id}", headers={"X-Server-API-Key": other}).status_code == 404
