"""The send routes refuse what cannot be stored or sent, with a code, and accept what clients send.

Types, lengths that fit the columns, address syntax, CR/LF in anything that becomes a header, and
text that cannot be encoded: each is a 4xx with the project's envelope and nothing stored.
"""
import base64
import io

import pytest

from controlplane.extensions import db
from controlplane.gateway.envelope import GatewayError
from controlplane.gateway.keys import system_key
from controlplane.gateway.models import Message
from controlplane.gateway.sending import accept, validate_message


def auth(key):
    return {"X-Server-API-Key": key}


def body(**overrides):
    sent = {"to": ["alice@example.com"], "from": "agent@mailgoat.dev", "subject": "Hello", "plain_body": "Hi"}
    sent.update(overrides)
    return sent


def stored(app):
    with app.app_context():
        return db.session.query(Message).order_by(Message.id).all()


def refused(response, status=422, code="ParameterError"):
    payload = response.get_json()
    assert response.status_code == status, payload
    assert payload["data"]["code"] == code and payload["error"] == code, payload
    assert payload["message"] == payload["data"]["message"] and payload["message"]
    return payload


@pytest.mark.parametrize("field,value,message", [
    ("subject", {"a": 1}, "`subject` must be a string"),
    ("subject", ["a"], "`subject` must be a string"),
    ("tag", {"a": 1}, "`tag` must be a string"),
    ("tag", ["a"], "`tag` must be a string"),
    ("from", ["agent@mailgoat.dev"], "`from` must be a string"),
    ("from", 7, "`from` must be a string"),
    ("from", {"email": "agent@mailgoat.dev"}, "`from` must be a string"),
    ("headers", "X-A: 1", "`headers` must be a hash"),
    ("headers", ["X-A"], "`headers` must be a hash"),
    ("attachments", {"name": "a.txt", "data": "aGk="}, "`attachments` must be an array"),
    ("attachments", ["a.txt"], "`attachments[0]` must be an object"),
    ("attachments", [{"name": ["a.txt"], "data": "aGk="}], "`attachments[0].name` must be a string"),
    ("to", 7, "`to` must be an array or a comma-separated string"),
    ("to", [7], "`to[0]` must be a string"),
    ("plain_body", {"text": "hi"}, "`plain_body` must be a string"),
    ("bounce", "sometimes", "`bounce` must be true or false"),
])
def test_a_wrong_json_type_is_refused_with_422_parameter_error(app, client, sending_key, field, value, message):
    response = client.post("/api/v1/send/message", json=body(**{field: value}), headers=auth(sending_key))
    payload = refused(response)
    assert payload["status"] == "parameter-error" and payload["data"]["message"] == message
    assert stored(app) == []


def test_only_the_first_problem_is_reported_in_field_order(client, sending_key):
    response = client.post("/api/v1/send/message", json=body(subject=[1], tag={}), headers=auth(sending_key))
    assert refused(response)["data"]["message"] == "`subject` must be a string"


def test_a_wrong_type_on_send_raw_is_refused(app, client, sending_key):
    response = client.post("/api/v1/send/raw", json={"mail_from": "x@mailgoat.dev", "rcpt_to": {"a": 1},
                                                     "data": "aGk="}, headers=auth(sending_key))
    refused(response)
    assert stored(app) == []


def test_a_tag_longer_than_its_column_is_refused_and_255_fits(app, client, sending_key):
    refused(client.post("/api/v1/send/message", json=body(tag="t" * 256), headers=auth(sending_key)))
    ok = client.post("/api/v1/send/message", json=body(tag="t" * 255), headers=auth(sending_key))
    assert ok.status_code == 200
    assert stored(app)[0].tag == "t" * 255


def test_an_address_longer_than_its_column_is_refused(app, client, sending_key):
    long_address = "a" * 64 + "@" + ".".join(["b" * 60] * 5) + ".com"  # 374 characters
    for field in ("to", "from"):
        response = client.post("/api/v1/send/message", json=body(**{field: long_address}),
                               headers=auth(sending_key))
        assert refused(response)["data"]["message"].endswith("must be at most 320 characters")
    assert stored(app) == []


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "from", "sender", "reply_to"])
@pytest.mark.parametrize("address", ["not-an-email", "a@b@c"])
def test_an_invalid_address_is_refused_in_every_address_field(app, client, sending_key, field, address):
    value = [address] if field in ("to", "cc", "bcc") else address
    response = client.post("/api/v1/send/message", json=body(**{field: value}), headers=auth(sending_key))
    payload = refused(response, code="InvalidAddress")
    assert payload["status"] == "error" and address in payload["message"] and f"`{field}" in payload["message"]
    assert stored(app) == []


@pytest.mark.parametrize("field", ["rcpt_to", "mail_from"])
def test_an_invalid_address_is_refused_on_send_raw(client, sending_key, field):
    raw = {"mail_from": "x@mailgoat.dev", "rcpt_to": ["a@example.com"], "data": "aGk="}
    raw[field] = ["a@b@c"] if field == "rcpt_to" else "a@b@c"
    refused(client.post("/api/v1/send/raw", json=raw, headers=auth(sending_key)), code="InvalidAddress")


def test_address_forms_that_postal_accepts_still_work(app, client, sending_key):
    response = client.post("/api/v1/send/message", json=body(
        to=["Alice <alice@example.com>", '"Doe, John" <john@example.com>', "José Núñez <jose@example.com>"],
        cc="bob@example.com, Carol <carol@example.com>",
        **{"from": "Agent <agent@mailgoat.dev>"}, reply_to="<replies@mailgoat.dev>",
        sender="robot@mailgoat.local"), headers=auth(sending_key))
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()["data"]["messages"]) == {
        "Alice <alice@example.com>", '"Doe, John" <john@example.com>', "José Núñez <jose@example.com>",
        "bob@example.com", "Carol <carol@example.com>"}


@pytest.mark.parametrize("overrides", [
    {"subject": "Hello\r\nBcc: victim@example.com"},
    {"subject": "Hello\nX-Injected: 1"},
    {"from": "agent@mailgoat.dev\r\nBcc: victim@example.com"},
    {"to": ["alice@example.com\nBcc: victim@example.com"]},
    {"sender": "agent@mailgoat.dev\rX: 1"},
    {"reply_to": "agent@mailgoat.dev\nBcc: victim@example.com"},
    {"tag": "a\r\nb"},
    {"headers": {"X-Evil\r\nBcc": "victim@example.com"}},
    {"headers": {"X-Note": "fine\r\nBcc: victim@example.com"}},
    {"attachments": [{"name": "a.txt\r\nX: 1", "data": "aGk="}]},
])
def test_a_line_break_in_anything_that_becomes_a_header_is_refused(app, client, sending_key, overrides):
    response = client.post("/api/v1/send/message", json=body(**overrides), headers=auth(sending_key))
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["data"]["code"] in ("ParameterError", "InvalidAddress")
    assert stored(app) == []


@pytest.mark.parametrize("headers", [{"X Spaced": "1"}, {"X-Colon:": "1"}, {"": "1"}, {"X-Ünicode": "1"}])
def test_a_header_name_that_mime_cannot_carry_is_refused(client, sending_key, headers):
    refused(client.post("/api/v1/send/message", json=body(headers=headers), headers=auth(sending_key)))


def test_an_attachment_content_type_that_is_not_a_mime_type_is_refused(client, sending_key):
    attachment = {"name": "a.txt", "content_type": "text plain", "data": "aGk="}
    refused(client.post("/api/v1/send/message", json=body(attachments=[attachment]), headers=auth(sending_key)))


def test_numeric_header_values_are_kept_as_text(app, client, sending_key):
    response = client.post("/api/v1/send/message", json=body(headers={"X-Priority": 1}), headers=auth(sending_key))
    assert response.status_code == 200
    assert '"X-Priority": "1"' in stored(app)[0].params


def test_postal_order_still_wins_over_blank_fields(client, sending_key):
    """Blank strings are "missing" to Postal, not invalid addresses."""
    response = client.post("/api/v1/send/message", json=body(**{"from": "  "}, sender="", reply_to=""),
                           headers=auth(sending_key))
    refused(response, code="FromAddressMissing")


def test_text_that_cannot_be_encoded_is_refused_at_accept_by_our_own_senders(app):
    """Internal senders (alert and status mail) skip request_params: the store refuses it too."""
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        key = system_key(settings, "test-system", "system:test")
        for field in ("plain_body", "html_body", "subject"):
            normalised = validate_message(body(**{field: "bad \ud800 text"}), key, settings.max_attachment_bytes)
            with pytest.raises(GatewayError) as refusal:
                accept(key, "message", normalised, None, None)
            assert refusal.value.code == "InvalidCharacters" and refusal.value.status == 400
            db.session.rollback()
    assert stored(app) == []


@pytest.mark.parametrize("field", ["plain_body", "html_body", "reply_to", "sender"])
def test_a_lone_surrogate_over_http_is_refused_not_stored(app, client, sending_key, field):
    raw = ('{"to": ["alice@example.com"], "from": "agent@mailgoat.dev", "plain_body": "hi", "%s": "x\\ud800"}'
           % field)
    response = client.post("/api/v1/send/message", data=raw, content_type="application/json",
                           headers=auth(sending_key))
    assert 400 <= response.status_code < 500 and response.get_json()["status"] != "success"
    assert stored(app) == []


# -- the client gaps (CONTRACTS.md §2), each the client's exact request ----------------------------

def test_the_1_0_0b1_sdk_body_field_on_messages_send_is_the_plain_body(app, client, sending_key):
    # requests.post(f"{base}/api/v1/messages/send", data={...}, headers={"Authorization": f"Bearer {key}"})
    response = client.post("/api/v1/messages/send",
                           data={"to": "alice@example.com", "subject": "Hello", "body": "Hi from the SDK",
                                 "from": "agent@mailgoat.dev"},
                           headers={"Authorization": f"Bearer {sending_key}"})
    assert response.status_code == 200, response.get_json()
    message_id = response.get_json()["message_id"]
    shown = client.get(f"/api/v1/messages/{message_id}", headers=auth(sending_key)).get_json()
    assert shown["plain_body"] == "Hi from the SDK" and shown["body"] == "Hi from the SDK"


def test_body_is_accepted_as_plain_body_in_json_on_send_message(app, client, sending_key):
    sent = body(body="Hi in JSON")
    del sent["plain_body"]
    response = client.post("/api/v1/send/message", json=sent, headers=auth(sending_key))
    assert response.status_code == 200, response.get_json()
    assert '"plain_body": "Hi in JSON"' in stored(app)[0].params


def test_plain_body_wins_over_body_when_both_are_sent(app, client, sending_key):
    response = client.post("/api/v1/send/message", json=body(plain_body="plain", body="sdk"),
                           headers=auth(sending_key))
    assert response.status_code == 200
    assert '"plain_body": "plain"' in stored(app)[0].params


def test_attachment_size_is_the_decoded_byte_count(client, sending_key):
    seventeen = b"seventeen bytes!!"
    assert len(seventeen) == 17
    attachment = {"name": "a.bin", "content_type": "application/octet-stream",
                  "data": base64.b64encode(seventeen).decode()}
    sent = client.post("/api/v1/send/message", json=body(attachments=[attachment]), headers=auth(sending_key))
    recipient_id = sent.get_json()["data"]["messages"]["alice@example.com"]["id"]
    shown = client.post("/api/v1/messages/message", json={"id": recipient_id, "_expansions": ["attachments"]},
                        headers=auth(sending_key)).get_json()
    assert shown["data"]["attachments"][0]["size"] == 17


def test_an_sdk_file_part_of_17_bytes_reads_back_as_17(client, sending_key):
    # The 1.0.0b1 SDK: form fields and a file part named attachments, to messages/send with Bearer.
    sent = client.post("/api/v1/messages/send", content_type="multipart/form-data",
                       data={"to": "alice@example.com", "from": "agent@mailgoat.dev", "subject": "Report",
                             "body": "See attached",
                             "attachments": (io.BytesIO(b"seventeen bytes!!"), "r.bin", "application/octet-stream")},
                       headers={"Authorization": f"Bearer {sending_key}"})
    assert sent.status_code == 200, sent.get_json()
    recipient_id = sent.get_json()["data"]["messages"]["alice@example.com"]["id"]
    shown = client.post("/api/v1/messages/message", json={"id": recipient_id, "_expansions": ["attachments"]},
                        headers={"Authorization": f"Bearer {sending_key}"}).get_json()
    assert [a["size"] for a in shown["data"]["attachments"]] == [17]


def node_cli_send(key: str, idempotency: str, text: str):
    """The Node CLI's send: JSON, the key in X-Server-API-Key, its idempotency key in headers."""
    return {"json": {"to": ["alice@example.com"], "from": "agent@mailgoat.dev", "subject": "Deploy",
                     "plain_body": text, "headers": {"X-Idempotency-Key": idempotency}},
            "headers": {"X-Server-API-Key": key, "Content-Type": "application/json"}}


def test_the_same_idempotency_key_with_a_different_body_is_409(app, client, sending_key):
    first = client.post("/api/v1/send/message", **node_cli_send(sending_key, "deploy-9", "v1 is out"))
    assert first.status_code == 200
    changed = client.post("/api/v1/send/message", **node_cli_send(sending_key, "deploy-9", "v2 is out"))
    payload = refused(changed, status=409, code="IdempotencyKeyMismatch")
    assert payload["status"] == "error"
    again = client.post("/api/v1/send/message", **node_cli_send(sending_key, "deploy-9", "v1 is out"))
    assert again.status_code == 200 and again.get_json()["data"] == first.get_json()["data"]
    (row,) = stored(app)
    assert '"plain_body": "v1 is out"' in row.params


def test_the_idempotency_key_header_with_a_different_body_is_409(client, sending_key):
    headers = {**auth(sending_key), "Idempotency-Key": "retry-3"}
    assert client.post("/api/v1/send/message", json=body(), headers=headers).status_code == 200
    refused(client.post("/api/v1/send/message", json=body(subject="Other"), headers=headers),
            status=409, code="IdempotencyKeyMismatch")
    scheduled = client.post("/api/v1/send/message", json=body(send_at="2999-01-01T00:00:00Z"), headers=headers)
    refused(scheduled, status=409, code="IdempotencyKeyMismatch")


def test_a_repeated_scheduled_send_with_the_same_key_returns_the_original(client, sending_key):
    headers = {**auth(sending_key), "Idempotency-Key": "later-1"}
    sent = body(send_at="2999-01-01T00:00:00Z")
    first = client.post("/api/v1/send/message", json=sent, headers=headers)
    again = client.post("/api/v1/send/message", json=sent, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.get_json()["data"] == first.get_json()["data"]


@pytest.mark.parametrize("send_at", ["١٢", "³", True, {"at": 1}, 10 ** 30, "next tuesday"])
def test_a_send_at_that_is_not_a_time_is_refused_with_invalid_send_at(app, client, sending_key, send_at):
    refused(client.post("/api/v1/send/message", json=body(send_at=send_at), headers=auth(sending_key)),
            code="InvalidSendAt")
    assert stored(app) == []


def test_an_idempotency_key_header_with_a_nul_byte_is_refused_with_400(app, client, sending_key):
    response = client.post("/api/v1/send/message", json=body(),
                           headers={**auth(sending_key), "Idempotency-Key": "a\x00b"})
    refused(response, status=400, code="InvalidCharacters")
    assert stored(app) == []
