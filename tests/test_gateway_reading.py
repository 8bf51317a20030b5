"""Postal's read endpoints, cancelling, and listing."""
import pytest

from controlplane.delivery import dispatch_due
from controlplane.postal import postal_client
from tests.conftest import new_key


def auth(key):
    return {"X-Server-API-Key": key}


def send(client, key, **overrides):
    body = {"to": ["alice@example.com"], "from": "agent@mailgoat.dev", "subject": "s", "plain_body": "hello",
            "tag": "welcome", **overrides}
    response = client.post("/api/v1/send/message", json=body, headers=auth(key))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_messages_message_with_expansions_from_our_store(client, sending_key):
    sent = send(client, sending_key)
    entry = sent["data"]["messages"]["alice@example.com"]
    response = client.post("/api/v1/messages/message", json={"id": entry["id"], "_expansions": ["status", "details",
                                                                                                 "plain_body"]},
                           headers=auth(sending_key))
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["id"] == entry["id"] and data["token"] == entry["token"]
    assert data["status"]["status"] == "Pending"
    assert data["details"]["rcpt_to"] == "alice@example.com" and data["details"]["tag"] == "welcome"
    assert data["plain_body"] == "hello"
    everything = client.post("/api/v1/messages/message", json={"id": entry["token"], "_expansions": True},
                             headers=auth(sending_key)).get_json()["data"]
    assert {"status", "details", "plain_body", "html_body", "attachments", "headers"} <= set(everything)


def test_messages_message_errors(client, sending_key):
    missing = client.post("/api/v1/messages/message", json={}, headers=auth(sending_key))
    assert missing.status_code == 422 and missing.get_json()["status"] == "parameter-error"
    unknown = client.post("/api/v1/messages/message", json={"id": 424242}, headers=auth(sending_key))
    assert unknown.status_code == 404
    assert unknown.get_json()["data"] == {"id": 424242, "message": "No message found matching provided ID",
                                          "code": "MessageNotFound"}


def test_postal_only_expansions_and_deliveries_are_read_through_postal(make_app, postal):
    app = make_app(POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key, POSTAL_TRANSPORT="http")
    key = new_key(app, "send", name="k")
    client = app.test_client()
    sent = send(client, key)
    with app.app_context():
        dispatch_due(app.extensions["controlplane.settings"], postal_client(app), "w")
    postal_id = postal.sent[0]["messages"]["alice@example.com"]["id"]
    postal.messages[postal_id]["inspection"] = {"inspected": True, "spam": False}
    data = client.post("/api/v1/messages/message", json={"id": sent["message_id"], "_expansions": ["inspection"]},
                       headers=auth(key)).get_json()["data"]
    assert data["inspection"] == {"inspected": True, "spam": False}
    assert postal.requests[-1]["path"] == "/api/v1/messages/message"
    postal.mode = "error500"
    down = client.post("/api/v1/messages/message", json={"id": postal_id, "_expansions": ["inspection"]},
                       headers=auth(key))
    assert down.status_code == 503 and down.get_json()["data"]["code"] == "UpstreamUnavailable"


def test_delete_cancels_queued_messages_only(app, client, sending_key):
    sent = send(client, sending_key)
    response = client.post("/api/v1/messages/delete", json={"id": sent["message_id"]}, headers=auth(sending_key))
    assert response.status_code == 200
    body = response.get_json()
    assert body["data"] == {"success": True, "message_id": sent["message_id"]} and body["success"] is True
    shown = client.get(f"/api/v1/messages/{sent['message_id']}", headers=auth(sending_key)).get_json()
    assert shown["status"] == "cancelled"
    again = client.post("/api/v1/messages/delete", json={"id": sent["message_id"]}, headers=auth(sending_key))
    assert again.status_code == 409 and again.get_json()["data"]["code"] == "MessageNotCancellable"
    with app.app_context():
        settings = app.extensions["controlplane.settings"]
        assert dispatch_due(settings, postal_client(app), "w") == 0  # cancelled mail is never sent


def test_list_filters_and_cursor_pagination(client, sending_key, make_key):
    for i in range(5):
        send(client, sending_key, to=[f"user{i}@example.com"], tag="even" if i % 2 == 0 else "odd")
    page = client.get("/api/v1/messages?limit=2", headers=auth(sending_key)).get_json()["data"]
    assert [m["to"] for m in page["messages"]] == [["user4@example.com"], ["user3@example.com"]]
    seen = [m["id"] for m in page["messages"]]
    while page["next_cursor"]:
        page = client.get(f"/api/v1/messages?limit=2&cursor={page['next_cursor']}",
                          headers=auth(sending_key)).get_json()["data"]
        seen += [m["id"] for m in page["messages"]]
    assert len(seen) == len(set(seen)) == 5
    evens = client.get("/api/v1/messages?tag=even", headers=auth(sending_key)).get_json()["data"]["messages"]
    assert len(evens) == 3
    one = client.get("/api/v1/messages?recipient=user1@example.com", headers=auth(sending_key)).get_json()["data"]
    assert [m["to"] for m in one["messages"]] == [["user1@example.com"]]
    queued = client.get("/api/v1/messages?state=queued&since=2000-01-01T00:00:00Z",
                        headers=auth(sending_key)).get_json()["data"]
    assert len(queued["messages"]) == 5
    _, stranger = make_key("send", name="stranger")
    assert client.get("/api/v1/messages", headers=auth(stranger)).get_json()["data"]["messages"] == []


@pytest.mark.parametrize("query,code", [("state=lost", "InvalidState"), ("cursor=!!", "InvalidCursor"),
                                        ("limit=many", "InvalidLimit"), ("since=yesterday", "InvalidSendAt")])
def test_bad_list_queries_are_4xx(client, sending_key, query, code):
    response = client.get(f"/api/v1/messages?{query}", headers=auth(sending_key))
    assert 400 <= response.status_code < 500 and response.get_json()["data"]["code"] == code


# ---------------------------------------------------------------- reachability probes (CONTRACTS.md §2)

PROBE_ID = "config-validate-test-id"


@pytest.mark.parametrize("path", ["/api/v1/messages/message", "/api/v1/messages/deliveries"])
def test_the_node_clis_reachability_probe_gets_postals_own_answer(client, sending_key, path):
    # `mailgoat config validate` and `metrics serve` /health: a made-up id, read as "up, key accepted".
    response = client.post(path, json={"id": PROBE_ID}, headers=auth(sending_key))
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "error"
    assert body["data"] == {"id": PROBE_ID, "message": "No message found matching provided ID",
                            "code": "MessageNotFound"}


def test_the_probe_with_a_wrong_key_is_still_refused(client):
    response = client.post("/api/v1/messages/message", json={"id": PROBE_ID},
                           headers=auth("mg_" + "x" * 32))
    assert response.status_code == 401 and response.get_json()["data"]["code"] == "InvalidServerAPIKey"


@pytest.mark.parametrize("identifier", [424242, "424242", "0123456789abcdef",
                                        "0b8f2a4e-5d8c-4a6e-9a53-3f5f0f0e6a11@mailgoat.dev"])
def test_an_unknown_id_shaped_like_a_real_one_is_still_404(client, sending_key, identifier):
    response = client.post("/api/v1/messages/message", json={"id": identifier}, headers=auth(sending_key))
    assert response.status_code == 404 and response.get_json()["data"]["code"] == "MessageNotFound"


@pytest.mark.parametrize("identifier", [PROBE_ID, "424242", "0b8f2a4e-5d8c-4a6e-9a53-3f5f0f0e6a11"])
def test_mailgoat_read_of_an_unknown_id_ends_in_a_clear_404(client, sending_key, identifier):
    response = client.get(f"/api/v1/messages/{identifier}", headers=auth(sending_key))
    assert response.status_code == 404
    assert response.get_json()["error"] == "MessageNotFound"
    assert response.get_json()["message"] == "No message found matching provided ID"


@pytest.mark.parametrize("identifier", [{"a": 1}, [1], True, 1.5])
def test_an_id_of_the_wrong_json_type_is_a_parameter_error(client, sending_key, identifier):
    response = client.post("/api/v1/messages/message", json={"id": identifier}, headers=auth(sending_key))
    assert response.status_code == 422 and response.get_json()["status"] == "parameter-error"
