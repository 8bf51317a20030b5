"""Sending as each MailGoat client encodes it, validation exactly as Postal, idempotency, reads."""
import base64
import io
import json

import pytest

from controlplane.extensions import db
from controlplane.gateway.models import Message, MessageRecipient
from tests.conftest import new_key


def auth(key):
    return {"X-Server-API-Key": key}


def node_cli_body(**overrides):
    body = {"to": ["alice@example.com"], "from": "agent@mailgoat.dev", "subject": "Hello",
            "plain_body": "Hi Alice", "headers": {"X-Idempotency-Key": "idem-1"}}
    body.update(overrides)
    return body


def messages(app):
    with app.app_context():
        return db.session.query(Message).order_by(Message.id).all()


def test_node_cli_json_send_returns_postal_envelope_and_top_level_message_id(app, client, sending_key):
    response = client.post("/api/v1/send/message", json=node_cli_body(cc="bob@example.com, carol@example.com"),
                           headers=auth(sending_key))
    assert response.status_code == 200
    body = response.get_json()
    assert list(body)[:4] == ["status", "time", "flags", "data"]
    assert body["status"] == "success" and body["flags"] == {}
    data = body["data"]
    assert body["message_id"] == data["message_id"] and data["message_id"].endswith("@mailgoat.dev")
    assert set(data["messages"]) == {"alice@example.com", "bob@example.com", "carol@example.com"}
    for entry in data["messages"].values():
        assert isinstance(entry["id"], int) and len(entry["token"]) == 16 and entry["token"].isalnum()
    (row,) = messages(app)
    assert row.state == "queued" and row.kind == "message" and row.idempotency_key == "idem-1"


def test_python_sdk_form_with_repeated_to_and_file_attachments(app, client, sending_key):
    data = {"to": ["a@example.com", "b@example.com"], "subject": "Report", "plain_body": "See attached",
            "from": "agent@mailgoat.dev",
            "attachments": (io.BytesIO(b"%PDF-1.4 fake"), "report.pdf", "application/octet-stream")}
    response = client.post("/api/v1/send/message", data=data, headers=auth(sending_key),
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()["data"]["messages"]) == {"a@example.com", "b@example.com"}
    params = json.loads(messages(app)[0].params)
    assert params["attachments"] == [{"name": "report.pdf", "content_type": "application/octet-stream",
                                      "data": base64.b64encode(b"%PDF-1.4 fake").decode()}]


def test_published_sdk_alias_with_bearer_key(client, sending_key):
    response = client.post("/api/v1/messages/send", data={"to": "a@example.com", "subject": "s", "plain_body": "b",
                                                          "from": "x@mailgoat.dev"},
                           headers={"Authorization": f"Bearer {sending_key}"})
    assert response.status_code == 200
    assert response.get_json()["message_id"]


def test_postal_params_form_field(client, sending_key):
    params = json.dumps({"to": ["a@example.com"], "from": "x@mailgoat.dev", "plain_body": "b"})
    response = client.post("/api/v1/send/message", data={"params": params}, headers=auth(sending_key))
    assert response.status_code == 200


@pytest.mark.parametrize("body,code,message", [
    ({"from": "x@mailgoat.dev", "plain_body": "b"}, "NoRecipients",
     "There are no recipients defined to receive this message"),
    ({"to": [f"u{i}@example.com" for i in range(51)], "plain_body": ""}, "TooManyToAddresses",
     "The maximum number of To addresses has been reached (maximum 50)"),
    ({"to": ["a@example.com"], "cc": [f"u{i}@e.com" for i in range(51)]}, "TooManyCCAddresses",
     "The maximum number of CC addresses has been reached (maximum 50)"),
    ({"bcc": [f"u{i}@e.com" for i in range(51)]}, "TooManyBCCAddresses",
     "The maximum number of BCC addresses has been reached (maximum 50)"),
    ({"to": ["a@example.com"]}, "NoContent", "There is no content defined for this e-mail"),
    ({"to": ["a@example.com"], "plain_body": "b"}, "FromAddressMissing", "The From address is missing and is required"),
    ({"to": ["a@example.com"], "plain_body": "b", "from": "x@y.com", "attachments": [{"data": "aGk="}]},
     "AttachmentMissingName", "An attachment is missing a name"),
    ({"to": ["a@example.com"], "plain_body": "b", "from": "x@y.com", "attachments": [{"name": "a.txt"}]},
     "AttachmentMissingData", "An attachment is missing data"),
])
def test_validation_reports_postal_first_error_with_its_code_and_message(app, client, sending_key, body, code, message):
    response = client.post("/api/v1/send/message", json=body, headers=auth(sending_key))
    assert response.status_code == 422
    payload = response.get_json()
    assert payload["status"] == "error"
    assert payload["data"] == {"message": message, "code": code}
    assert payload["error"] == code and payload["message"] == message
    assert messages(app) == []


def test_from_domains_of_the_key_are_enforced(client, make_key):
    _, key = make_key("send", allowed_from_domains=["mailgoat.dev"])
    bad = client.post("/api/v1/send/message", json=node_cli_body(**{"from": "ceo@elsewhere.com"}), headers=auth(key))
    assert bad.status_code == 422 and bad.get_json()["data"]["code"] == "UnauthenticatedFromAddress"
    good = client.post("/api/v1/send/message", json=node_cli_body(**{"from": "Agent <agent@mailgoat.dev>"}),
                       headers=auth(key))
    assert good.status_code == 200


def test_default_sender_fills_a_missing_from(app, client, make_key):
    _, key = make_key("send", default_sender="robot@mailgoat.dev")
    body = node_cli_body()
    del body["from"]
    assert client.post("/api/v1/send/message", json=body, headers=auth(key)).status_code == 200
    assert messages(app)[0].from_address == "robot@mailgoat.dev"


def test_attachment_size_limit(make_app, make_key):
    app = make_app(MAX_ATTACHMENT_BYTES="10")
    key = new_key(app, "send", name="k")
    body = node_cli_body(attachments=[{"name": "big.bin", "data": base64.b64encode(b"x" * 11).decode()}])
    response = app.test_client().post("/api/v1/send/message", json=body, headers=auth(key))
    assert response.status_code == 413 and response.get_json()["data"]["code"] == "AttachmentTooLarge"


def test_raw_send_requires_its_parameters(client, sending_key):
    response = client.post("/api/v1/send/raw", json={"rcpt_to": ["a@example.com"], "data": "aGk="},
                           headers=auth(sending_key))
    body = response.get_json()
    assert response.status_code == 422 and body["status"] == "parameter-error"
    assert body["data"]["message"] == "`mail_from` parameter is required but is missing"
    raw = base64.b64encode(b"From: x@mailgoat.dev\r\nTo: a@example.com\r\nSubject: hi\r\n\r\nbody").decode()
    ok = client.post("/api/v1/send/raw", json={"rcpt_to": ["a@example.com"], "mail_from": "x@mailgoat.dev",
                                               "data": raw}, headers=auth(sending_key))
    assert ok.status_code == 200 and list(ok.get_json()["data"]["messages"]) == ["a@example.com"]


def test_idempotency_key_in_headers_returns_the_original_response(app, client, sending_key):
    first = client.post("/api/v1/send/message", json=node_cli_body(), headers=auth(sending_key)).get_json()
    again = client.post("/api/v1/send/message", json=node_cli_body(), headers=auth(sending_key)).get_json()
    assert again["data"] == first["data"] and again["message_id"] == first["message_id"]
    assert len(messages(app)) == 1


def test_idempotency_key_request_header_and_per_key_scope(app, client, make_key):
    _, key_a = make_key("send", name="a")
    _, key_b = make_key("send", name="b")
    body = node_cli_body(headers={})
    headers = {**auth(key_a), "Idempotency-Key": "retry-7"}
    first = client.post("/api/v1/send/message", json=body, headers=headers).get_json()
    assert client.post("/api/v1/send/message", json=body, headers=headers).get_json()["data"] == first["data"]
    other = client.post("/api/v1/send/message", json=body, headers={**auth(key_b), "Idempotency-Key": "retry-7"})
    assert other.get_json()["data"]["message_id"] != first["data"]["message_id"]
    assert len(messages(app)) == 2


def test_send_at_schedules_and_bad_send_at_is_rejected(app, client, sending_key):
    later = client.post("/api/v1/send/message", json=node_cli_body(send_at="2999-01-01T00:00:00Z", headers={}),
                        headers=auth(sending_key))
    assert later.status_code == 200 and messages(app)[0].state == "scheduled"
    epoch = client.post("/api/v1/send/message", json=node_cli_body(send_at=32503680000, headers={}),
                        headers=auth(sending_key))
    assert epoch.status_code == 200 and messages(app)[1].state == "scheduled"
    bad = client.post("/api/v1/send/message", json=node_cli_body(send_at="next tuesday", headers={}),
                      headers=auth(sending_key))
    assert bad.status_code == 422 and bad.get_json()["data"]["code"] == "InvalidSendAt"


def test_read_after_send_by_every_id_the_client_may_hold(client, sending_key):
    sent = client.post("/api/v1/send/message", json=node_cli_body(), headers=auth(sending_key)).get_json()
    message_id = sent["message_id"]
    entry = sent["data"]["messages"]["alice@example.com"]
    for identifier in (message_id, entry["id"], entry["token"]):
        response = client.get(f"/api/v1/messages/{identifier}", headers=auth(sending_key))
        assert response.status_code == 200, identifier
        shown = response.get_json()
        assert shown["id"] == message_id and shown["message_id"] == message_id
        assert shown["to"] == ["alice@example.com"] and shown["from"] == "agent@mailgoat.dev"
        assert shown["subject"] == "Hello" and shown["plain_body"] == "Hi Alice" and shown["body"] == "Hi Alice"
        assert shown["status"] == "queued"


def test_unknown_and_foreign_messages_are_not_found(client, make_key, sending_key):
    sent = client.post("/api/v1/send/message", json=node_cli_body(), headers=auth(sending_key)).get_json()
    response = client.get("/api/v1/messages/999999", headers=auth(sending_key))
    assert response.status_code == 404
    assert response.get_json()["data"] == {"id": "999999", "message": "No message found matching provided ID",
                                           "code": "MessageNotFound"}
    _, stranger = make_key("send", name="stranger")
    assert client.get(f"/api/v1/messages/{sent['message_id']}", headers=auth(stranger)).status_code == 404
    _, reader = make_key("read", name="reader")
    assert client.get(f"/api/v1/messages/{sent['message_id']}", headers=auth(reader)).status_code == 200


def test_read_only_keys_cannot_send(client, read_only_key):
    response = client.post("/api/v1/send/message", json=node_cli_body(), headers=auth(read_only_key))
    assert response.status_code == 403 and response.get_json()["data"]["code"] == "InsufficientScope"


def test_recipients_are_stored_once_each(app, client, sending_key):
    client.post("/api/v1/send/message", json=node_cli_body(to=["a@example.com", "a@example.com"], headers={}),
                headers=auth(sending_key))
    with app.app_context():
        assert db.session.query(MessageRecipient).count() == 1
