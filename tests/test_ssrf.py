"""The SSRF guard: IPv4 hidden inside IPv6 transition forms, and relay addresses, are no webhook target,
neither when a URL is registered (event webhooks, status subscribers) nor when a delivery connects."""
import ipaddress
import socket

import httpx
import pytest

from controlplane.events import ssrf
from controlplane.events.sender import deliver
from tests.conftest import new_key

# Each form reaches an internal IPv4 address (or a relay nobody can vet) through a "global" IPv6 one.
EMBEDDED_FORMS = {
    "nat64": "64:ff9b::7f00:1",                  # NAT64 well-known prefix, 127.0.0.1
    "nat64-metadata": "64:ff9b::a9fe:a9fe",      # NAT64 of 169.254.169.254 (cloud metadata)
    "nat64-local-use": "64:ff9b:1::7f00:1",      # RFC 8215 local-use NAT64
    "6to4": "2002:7f00:1::",                     # 6to4 of 127.0.0.1
    "6to4-public": "2002:808:808::1",            # 6to4 at all: deprecated, goes through a relay
    "teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "ipv4-mapped": "::ffff:127.0.0.1",
    "ipv4-mapped-private": "::ffff:10.0.0.5",
    "ipv4-compatible": "::127.0.0.1",
    "ipv4-compatible-public": "::8.8.8.8",
}
RELAY_ANYCAST = "192.88.99.1"  # 6to4 relay anycast (192.88.99.0/24)


def _url(address: str) -> str:
    return f"http://[{address}]/hook" if ":" in address else f"http://{address}/hook"


@pytest.fixture
def api(make_app):
    app = make_app()
    return app.test_client(), {"X-Server-API-Key": new_key(app, "send", name="k")}


@pytest.mark.parametrize("address", [*EMBEDDED_FORMS.values(), RELAY_ANYCAST], ids=[*EMBEDDED_FORMS, "6to4-relay"])
def test_a_webhook_url_with_an_embedded_or_relay_address_is_refused_at_registration(api, address):
    client, headers = api
    response = client.post("/api/v1/webhooks", json={"url": _url(address)}, headers=headers)
    assert response.status_code == 422
    assert response.get_json()["data"]["code"] == "InvalidWebhookUrl"


@pytest.mark.parametrize("address", [*EMBEDDED_FORMS.values(), RELAY_ANYCAST], ids=[*EMBEDDED_FORMS, "6to4-relay"])
def test_a_status_subscriber_url_with_an_embedded_or_relay_address_is_refused(make_app, address):
    app = make_app()
    headers = {"X-Server-API-Key": new_key(app, "admin", name="ops")}
    response = app.test_client().post("/api/v1/subscribers", json={"url": _url(address)}, headers=headers)
    assert response.status_code == 422 and response.get_json()["data"]["code"] == "InvalidSubscriber"


@pytest.mark.parametrize("address", [*EMBEDDED_FORMS.values(), RELAY_ANYCAST], ids=[*EMBEDDED_FORMS, "6to4-relay"])
def test_a_delivery_to_a_name_resolving_to_an_embedded_form_never_connects(monkeypatch, address):
    """The guard at send time vets what the name resolves to *now* (DNS may have changed)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", lambda host, port, *a, **k: [
        (family, socket.SOCK_STREAM, 6, "", (address, port, 0, 0) if family == socket.AF_INET6 else (address, port))])
    connected = []
    http = httpx.Client(transport=httpx.MockTransport(lambda request: connected.append(request) or httpx.Response(200)))
    attempt = deliver(http, "https://hooks.example.com/in", "s", b"{}", 1, allow_private=False)
    assert attempt.ok is False and attempt.permanent is True and attempt.error.startswith("refused:")
    assert connected == []


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:8.8.8.8", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_targets_stay_usable_including_dns64_answers(monkeypatch, address):
    """On an IPv6-only network with DNS64, public IPv4 receivers resolve into 64:ff9b::/96."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(ssrf.socket, "getaddrinfo", lambda host, port, *a, **k: [
        (family, socket.SOCK_STREAM, 6, "", (address, port, 0, 0) if family == socket.AF_INET6 else (address, port))])
    assert ssrf.check_url("https://hooks.example.com/in", allow_private=False) == [ipaddress.ip_address(address)]


def test_the_refusal_names_the_internal_address_an_ipv6_form_hides(api):
    client, headers = api
    message = client.post("/api/v1/webhooks", json={"url": "http://[64:ff9b::a9fe:a9fe]/x"},
                          headers=headers).get_json()["data"]["message"]
    assert "169.254.169.254" in message
