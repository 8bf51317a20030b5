"""Postal's webhooks: RSA signatures over the raw bytes, idempotency, state updates."""
import json

import pytest

from controlplane.delivery import dispatch_due
from controlplane.extensions import db
from controlplane.gateway.models import InboundMessage, Message, PostalEvent
from controlplane.postal import postal_client
from tests.doubles.postal import PostalSigner
from tests.conftest import create_api_key, new_key


@pytest.fixture(scope="module")
def signer():
    return PostalSigner()


@pytest.fixture
def sent(make_app, postal, signer):
    """An app trusting the signer, with one message delivered to the Postal double."""
    app = make_app(POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key, POSTAL_TRANSPORT="http",
                   POSTAL_WEBHOOK_PUBLIC_KEY=signer.public_pem)
    key = new_key(app, "send", name="k")
    client = app.test_client()
    response = client.post("/api/v1/send/message", headers={"X-Server-API-Key": key},
                           json={"to": ["alice@example.com"], "from": "a@mailgoat.dev", "plain_body": "<b>hi</b> & bye"})
    with app.app_context():
        dispatch_due(app.extensions["controlplane.settings"], postal_client(app), "w")
    postal_ref = postal.sent[0]["messages"]["alice@example.com"]
    return app, client, {"X-Server-API-Key": key}, response.get_json()["message_id"], postal_ref


def status_payload(ref, status="Sent", subject="Hi <there> & ünïcode"):
    return {"message": {"id": ref["id"], "token": ref["token"], "direction": "outgoing", "message_id": "x@y",
                        "to": "alice@example.com", "from": "a@mailgoat.dev", "subject": subject,
                        "timestamp": 1.0, "spam_status": "NotSpam", "tag": None},
            "status": status, "details": "Message accepted by mx.example.com", "output": "250 OK",
            "sent_with_ssl": True, "timestamp": 1.0, "time": 0.2}


def state(app, message_id):
    with app.app_context():
        return db.session.query(Message).filter_by(message_id=message_id).one().state


def test_signed_message_sent_marks_the_message_delivered(sent, signer):
    app, client, headers, message_id, ref = sent
    body = signer.body("MessageSent", status_payload(ref))
    assert b"\\u003cthere\\u003e" in body and "ünïcode".encode() in body  # Postal's exact encoding
    response = client.post("/webhooks/postal", data=body, headers=signer.headers(body))
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    assert state(app, message_id) == "delivered"
    shown = client.get(f"/api/v1/messages/{message_id}", headers=headers).get_json()
    assert shown["status"] == "delivered" and shown["recipients"][0]["status"] == "delivered"


@pytest.mark.parametrize("event,expected", [("MessageDelayed", "delayed"), ("MessageDeliveryFailed", "failed"),
                                            ("MessageHeld", "held")])
def test_status_events_drive_the_state(sent, signer, event, expected):
    app, client, _, message_id, ref = sent
    body = signer.body(event, status_payload(ref, status="SoftFail"))
    assert client.post("/webhooks/postal", data=body, headers=signer.headers(body)).status_code == 200
    assert state(app, message_id) == expected


def test_bounce_refers_to_the_original_message(sent, signer):
    app, client, _, message_id, ref = sent
    body = signer.body("MessageBounced", {"original_message": {"id": ref["id"], "token": ref["token"]},
                                          "bounce": {"id": 99, "token": "b" * 16}})
    assert client.post("/webhooks/postal", data=body, headers=signer.headers(body)).status_code == 200
    assert state(app, message_id) == "bounced"


def test_legacy_sha1_signature_is_accepted(sent, signer):
    app, client, _, message_id, ref = sent
    body = signer.body("MessageSent", status_payload(ref))
    headers = signer.headers(body, sha1=True, with_256=False)
    assert client.post("/webhooks/postal", data=body, headers=headers).status_code == 200
    assert state(app, message_id) == "delivered"


def test_redelivered_events_are_applied_once(sent, signer):
    app, client, _, message_id, ref = sent
    body = signer.body("MessageSent", status_payload(ref), uuid_="6f1c3c1e-0000-4000-8000-000000000001")
    assert client.post("/webhooks/postal", data=body, headers=signer.headers(body)).get_json()["status"] == "ok"
    again = client.post("/webhooks/postal", data=body, headers=signer.headers(body))
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    with app.app_context():
        assert db.session.query(PostalEvent).count() == 1


def test_tampered_unsigned_and_foreign_signatures_are_401(sent, signer):
    app, client, _, message_id, ref = sent
    body = signer.body("MessageSent", status_payload(ref))
    headers = signer.headers(body)
    tampered = body.replace(b"MessageSent", b"MessageHeld")
    assert client.post("/webhooks/postal", data=tampered, headers=headers).status_code == 401
    # Re-serialised JSON is different bytes: it must not verify either.
    reserialised = json.dumps(json.loads(body)).encode()
    assert client.post("/webhooks/postal", data=reserialised, headers=headers).status_code == 401
    unsigned = client.post("/webhooks/postal", data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.get_json()["error"] == "InvalidSignature"
    other = PostalSigner()
    foreign = client.post("/webhooks/postal", data=body, headers=other.headers(body))
    assert foreign.status_code == 401
    assert state(app, message_id) == "sent"


def test_unsigned_webhooks_only_when_allowed_in_development(make_app):
    app = make_app(POSTAL_WEBHOOK_ALLOW_UNSIGNED="true")
    body = json.dumps({"event": "MessageLoaded", "timestamp": 1.0, "uuid": "u-1", "payload": {"message": {"id": 5}}})
    response = app.test_client().post("/webhooks/postal", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    from controlplane.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="POSTAL_WEBHOOK_ALLOW_UNSIGNED may only be set in development"):
        Settings.from_env({"APP_ENV": "production", "JWT_SECRET": "j" * 40, "API_KEY_SALT": "s" * 40, "BACKUP_ENCRYPTION_KEY": "ab" * 32,
                           "POSTAL_WEBHOOK_ALLOW_UNSIGNED": "1"})


def test_malformed_bodies_are_4xx(make_app, signer):
    app = make_app(POSTAL_WEBHOOK_PUBLIC_KEY=signer.public_pem)
    client = app.test_client()
    for body, status in ((b"not json", 400), (b"[1,2]", 400), (b'{"event": 5}', 422)):
        response = client.post("/webhooks/postal", data=body, headers=signer.headers(body))
        assert response.status_code == status, body


def test_keys_can_come_from_postal_jwks(make_app, signer):
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    numbers = signer.public_key.public_numbers()

    def b64(n):
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode().rstrip("=")

    jwks = json.dumps({"keys": [{"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e), "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
        app = make_app(POSTAL_JWKS_URL=url)
        body = signer.body("MessageLoaded", {"message": {"id": 1}})
        assert app.test_client().post("/webhooks/postal", data=body, headers=signer.headers(body)).status_code == 200
    finally:
        server.shutdown()


def test_inbound_raw_and_hash_formats_are_stored_and_readable(make_app, signer):
    import base64

    app = make_app(POSTAL_WEBHOOK_PUBLIC_KEY=signer.public_pem)
    reader = new_key(app, "read", name="r")
    owner_id, _ = create_api_key(app, "send", name="o", allowed_from_domains=["mailgoat.dev"])
    client = app.test_client()
    raw = {"id": 71, "rcpt_to": "agent@mailgoat.dev", "mail_from": "human@example.com",
           "message": base64.b64encode(b"Subject: hello\r\n\r\nhi agent").decode(), "base64": True, "size": 28}
    body = json.dumps(raw).encode()
    assert client.post("/webhooks/postal/inbound", data=body, headers=signer.headers(body)).status_code == 200
    duplicate = client.post("/webhooks/postal/inbound", data=body, headers=signer.headers(body))
    assert duplicate.get_json()["status"] == "duplicate"
    hashed = {"id": 72, "rcpt_to": "agent@mailgoat.dev", "mail_from": "human@example.com", "subject": "Re: <hi> & more",
              "plain_body": "thanks", "attachments": []}
    body = json.dumps(hashed).encode()
    assert client.post("/webhooks/postal/inbound", data=body, headers=signer.headers(body)).status_code == 200
    listed = client.get("/api/v1/inbound", headers={"X-Server-API-Key": reader}).get_json()["data"]
    assert [(m["format"], m["postal_id"]) for m in listed] == [("hash", 72), ("raw", 71)]
    shown = client.get(f"/api/v1/inbound/{listed[0]['id']}", headers={"X-Server-API-Key": reader}).get_json()["data"]
    assert shown["subject"] == "Re: <hi> & more" and shown["message"]["plain_body"] == "thanks"
    with app.app_context():
        from controlplane.events.models import Event

        assert db.session.query(Event).filter_by(type="message.inbound", api_key_id=owner_id).count() == 2
    unsigned = client.post("/webhooks/postal/inbound", data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401


def test_inbound_form_encoding(make_app, signer):
    from urllib.parse import urlencode

    app = make_app(POSTAL_WEBHOOK_PUBLIC_KEY=signer.public_pem)
    body = urlencode({"id": "80", "rcpt_to": "a@mailgoat.dev", "mail_from": "b@example.com", "subject": "form",
                      "plain_body": "x"}).encode()
    headers = {**signer.headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    response = app.test_client().post("/webhooks/postal/inbound", data=body, headers=headers)
    assert response.status_code == 200
    with app.app_context():
        from controlplane.gateway.models import InboundMessage

        assert db.session.query(InboundMessage).one().subject == "form"


def test_inbound_with_an_id_of_unicode_digits_is_stored_without_a_postal_id(make_app, signer):
    # "³".isdigit() is True but int("³") raises: the id is not Postal's, so it is simply not kept.
    app = make_app(POSTAL_WEBHOOK_PUBLIC_KEY=signer.public_pem)
    body = json.dumps({"id": "³", "rcpt_to": "a@mailgoat.dev", "mail_from": "b@example.com", "subject": "odd id",
                       "plain_body": "x"}).encode()
    response = app.test_client().post("/webhooks/postal/inbound", data=body, headers=signer.headers(body))
    assert response.status_code == 200
    with app.app_context():
        stored = db.session.query(InboundMessage).one()
        assert (stored.subject, stored.postal_id) == ("odd id", None)
