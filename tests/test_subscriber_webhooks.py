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
from tests.conftest import new_key




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


def test_the_webhook_connects_to_the_address_vetted_not_a_second_dns_answer(monkeypatch):
    """DNS rebinding: the first answer is public, a later one would be loopback."""
    import socket

    import httpx

    from controlplane.events import ssrf
    from controlplane.events.sender import deliver

    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", rebinding)
    seen = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers["Host"], request.extensions.get("sni_hostname")))
        return httpx.Response(204)

    http = httpx.Client(transport=httpx.MockTransport(transport))
    attempt = deliver(http, "https://hooks.example.com:8443/in?x=1", "s", b"{}", 1, allow_private=False)
    assert attempt.ok
    assert seen == [("93.184.216.34", "hooks.example.com:8443", "hooks.example.com")]


def test_pinning_brackets_ipv6_and_leaves_private_targets_alone_when_allowed(monkeypatch):
    import socket

    from controlplane.events import ssrf

    monkeypatch.setattr(ssrf.socket, "getaddrinfo", lambda host, port, *a, **k: [
        (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2606:2800:220:1:248:1893:25c8:1946", port, 0, 0))])
    pinned = ssrf.pin_url("http://hooks.example.com/in", allow_private=False)
    assert pinned.url == "http://[2606:2800:220:1:248:1893:25c8:1946]/in" and pinned.headers == {"Host": "hooks.example.com"}
    assert pinned.extensions == {}
    assert ssrf.pin_url("http://127.0.0.1:9/x", allow_private=True).url == "http://127.0.0.1:9/x"


def test_a_pinned_https_connection_still_checks_the_certificate_against_the_name(tmp_path):
    """Against a real TLS server: the address in the URL, the name in SNI and certificate checks."""
    import datetime
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import httpx
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from controlplane.events.ssrf import PinnedTarget

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.example.com")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    trust = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    try:
        with httpx.Client(verify=trust) as http:
            good = PinnedTarget(f"https://127.0.0.1:{port}/in", {"Host": f"hooks.example.com:{port}"},
                                {"sni_hostname": "hooks.example.com"})
            assert http.post(good.url, content=b"{}", headers=good.headers, extensions=good.extensions).status_code == 204
            wrong = PinnedTarget(good.url, {"Host": "evil.example.com"}, {"sni_hostname": "evil.example.com"})
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
                http.post(wrong.url, content=b"{}", headers=wrong.headers, extensions=wrong.extensions)
    finally:
        server.shutdown()


def test_a_send_looks_up_subscribers_only_for_keys_that_have_webhooks(hooked, receiver):
    from sqlalchemy import event

    app, client, headers, run_fan_out = hooked
    send(client, headers)  # settles last_used_at, whose commit would refresh the key row
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
    try:
        send(client, headers)
        assert not [s for s in statements if "FROM webhooks" in s and not s.lstrip().startswith("SELECT api_keys")]
        client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=headers)
        send(client, headers)  # the next send sees the new webhook at once
    finally:
        with app.app_context():
            event.remove(db.engine, "before_cursor_execute", record)
    run_fan_out()
    types = [json.loads(r["body"])["type"] for r in receiver.received]
    assert types.count("message.queued") == 1  # only the send made after the webhook existed
