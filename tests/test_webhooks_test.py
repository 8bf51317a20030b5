"""POST /api/v1/webhooks/test as the Node CLI's `mailgoat webhook test` sends it (CONTRACTS.md §2):
`{}` tests the calling key's registered webhooks; an `id` or `url` narrows it; ids are strings."""
import json

import pytest

from tests.conftest import new_key
from tests.doubles.receiver import Receiver

# What PostalClient.testWebhook() sends: axios posts `{}` as JSON with the key header.
CLI_BODY = b"{}"


@pytest.fixture
def cli(make_app):
    app = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS="true")
    headers = {"X-Server-API-Key": new_key(app, "send", name="cli"), "Content-Type": "application/json"}
    return app, app.test_client(), headers


@pytest.fixture
def receivers():
    started = [Receiver(), Receiver()]
    yield started
    for receiver in started:
        receiver.stop()


def _register(client, headers, url, name):
    return client.post("/api/v1/webhooks", json={"url": url, "name": name}, headers=headers).get_json()["data"]


def test_an_empty_body_tests_every_webhook_the_key_registered(cli, receivers):
    app, client, headers = cli
    first, second = (_register(client, headers, r.url, f"hook-{n}") for n, r in enumerate(receivers))
    answer = client.post("/api/v1/webhooks/test", data=CLI_BODY, headers=headers)
    assert answer.status_code == 200
    data = answer.get_json()["data"]
    assert data["success"] is True and data["tested"] == 2
    assert [r["id"] for r in data["results"]] == [first["id"], second["id"]]
    assert all(r["success"] and r["status_code"] == 200 for r in data["results"])
    for receiver in receivers:
        (request,) = receiver.received
        assert json.loads(request["body"])["type"] == "webhook.test"
        assert request["headers"]["X-MailGoat-Signature"].startswith("sha256=")


def test_one_failing_webhook_makes_the_test_fail_and_says_which(cli, receivers):
    app, client, headers = cli
    _register(client, headers, receivers[0].url, "ok")
    broken = _register(client, headers, receivers[1].url, "broken")
    receivers[1].status = 500
    data = client.post("/api/v1/webhooks/test", data=CLI_BODY, headers=headers).get_json()["data"]
    assert data["success"] is False
    assert [(r["id"], r["error"]) for r in data["results"] if not r["success"]] == [(broken["id"], "HTTP 500")]


def test_an_empty_body_without_registered_webhooks_is_a_clear_404(cli):
    app, client, headers = cli
    answer = client.post("/api/v1/webhooks/test", data=CLI_BODY, headers=headers)
    assert answer.status_code == 404
    body = answer.get_json()
    assert body["status"] == "error" and body["data"]["code"] == "WebhookNotFound"
    assert "POST /api/v1/webhooks" in body["data"]["message"]


def test_other_keys_webhooks_are_not_tested(cli, receivers, make_app):
    app, client, headers = cli
    _register(client, headers, receivers[0].url, "mine")
    other = {"X-Server-API-Key": new_key(app, "send", name="other"), "Content-Type": "application/json"}
    assert client.post("/api/v1/webhooks/test", data=CLI_BODY, headers=other).status_code == 404
    assert receivers[0].received == []


def test_an_id_narrows_the_test_to_that_webhook_as_a_string_id(cli, receivers):
    app, client, headers = cli
    _register(client, headers, receivers[0].url, "a")
    second = _register(client, headers, receivers[1].url, "b")
    assert isinstance(second["id"], str)
    data = client.post("/api/v1/webhooks/test", json={"id": second["id"]}, headers=headers).get_json()["data"]
    assert data["tested"] == 1 and data["id"] == second["id"] and data["success"] is True
    assert receivers[0].received == [] and len(receivers[1].received) == 1


@pytest.mark.parametrize("webhook_id", ["abc", "999999", "99999999999999999999999", "\u00b3", "-1"])
def test_an_unknown_or_malformed_id_is_a_404_not_a_500(cli, webhook_id):
    app, client, headers = cli
    answer = client.post("/api/v1/webhooks/test", json={"id": webhook_id}, headers=headers)
    assert answer.status_code == 404 and answer.get_json()["data"]["code"] == "WebhookNotFound"


@pytest.mark.parametrize("webhook_id", [["1"], {"id": 1}, True, 1.5])
def test_an_id_of_the_wrong_type_is_a_422(cli, webhook_id):
    app, client, headers = cli
    answer = client.post("/api/v1/webhooks/test", json={"id": webhook_id}, headers=headers)
    assert answer.status_code == 422 and answer.get_json()["data"]["code"] == "InvalidWebhookId"


def test_a_url_narrows_the_test_to_that_url(cli, receivers):
    app, client, headers = cli
    _register(client, headers, receivers[0].url, "registered")
    data = client.post("/api/v1/webhooks/test", json={"url": receivers[1].url}, headers=headers).get_json()["data"]
    assert data["tested"] == 1 and data["url"] == receivers[1].url and data["id"] is None
    assert receivers[0].received == [] and len(receivers[1].received) == 1


def test_webhook_ids_are_strings_in_every_answer(cli, receivers):
    app, client, headers = cli
    created = _register(client, headers, receivers[0].url, "s")
    listed = client.get("/api/v1/webhooks", headers=headers).get_json()["data"]
    deleted = client.delete(f"/api/v1/webhooks/{created['id']}", headers=headers).get_json()["data"]
    assert [created["id"], listed[0]["id"], deleted["id"]] == [created["id"]] * 3
    assert isinstance(created["id"], str)
