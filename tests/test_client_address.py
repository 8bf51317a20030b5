"""The client's address behind a trusted proxy: Fly-Client-IP or X-Forwarded-For, believed only
from a peer in TRUSTED_PROXIES, and used by the key allowlists, the throttles and the audit log."""
import ipaddress
import os

import pytest
from gunicorn.config import validate_string_to_addr_list
from sqlalchemy import select

from controlplane.extensions import db
from controlplane.gateway.models import AuditEntry
from controlplane.settings import PROJECT_ROOT, Settings, SettingsError
from tests.conftest import new_key
from tests.test_gateway_limits import start_inside_one_minute_window

FLY_PROXY = "172.16.5.9"  # a peer inside Fly's proxy network
STRANGER = "198.51.100.77"  # a peer on the internet, connecting straight to the machine
LOGIN = {"email": "nobody@example.com", "password": "wrong"}


@pytest.fixture
def fly_app(make_app):
    """An app configured as on Fly: Fly's proxy trusted, its Fly-Client-IP header believed."""
    return make_app(FLY_APP_NAME="mailgoat-controlplane", LOGIN_ATTEMPTS_PER_MINUTE="2")


def through(peer: str, **headers: str) -> dict:
    """Test-client keyword arguments for a request whose socket peer is `peer`."""
    return {"environ_base": {"REMOTE_ADDR": peer}, "headers": headers}


def audit_rows(app, action: str) -> list[AuditEntry]:
    with app.app_context():
        return db.session.execute(select(AuditEntry).where(AuditEntry.action == action)
                                  .order_by(AuditEntry.id)).scalars().all()


# ---------------------------------------------------------------- the allowlist of a key


def test_a_key_allowlist_sees_the_client_behind_a_trusted_proxy(fly_app):
    key = new_key(fly_app, "admin", allowed_ips=["203.0.113.0/24"])
    client = fly_app.test_client()
    allowed = client.get("/api/v1/credentials",
                         **through(FLY_PROXY, **{"Fly-Client-IP": "203.0.113.7", "X-Server-API-Key": key}))
    assert allowed.status_code == 200
    outside = client.get("/api/v1/credentials",
                         **through(FLY_PROXY, **{"Fly-Client-IP": "192.0.2.50", "X-Server-API-Key": key}))
    assert outside.status_code == 403 and outside.get_json()["data"]["code"] == "IpNotAllowed"
    assert "192.0.2.50" in outside.get_json()["data"]["message"]


def test_a_spoofed_client_header_from_an_untrusted_peer_does_not_pass_the_allowlist(fly_app):
    key = new_key(fly_app, "admin", allowed_ips=["203.0.113.0/24"])
    spoofed = fly_app.test_client().get(
        "/api/v1/credentials",
        **through(STRANGER, **{"Fly-Client-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.7",
                               "X-Server-API-Key": key}))
    assert spoofed.status_code == 403 and spoofed.get_json()["data"]["code"] == "IpNotAllowed"
    assert STRANGER in spoofed.get_json()["data"]["message"]


# ---------------------------------------------------------------- the login throttle and audit


def test_the_login_throttle_counts_each_client_behind_the_proxy_apart(fly_app):
    client = fly_app.test_client()
    start_inside_one_minute_window()
    first = [client.post("/api/v1/auth/login", json=LOGIN, **through(FLY_PROXY, **{"Fly-Client-IP": "203.0.113.10"}))
             .status_code for _ in range(3)]
    assert first == [401, 401, 429]
    # Another visitor arriving through the same proxy has a budget of their own.
    other = client.post("/api/v1/auth/login", json=LOGIN, **through(FLY_PROXY, **{"Fly-Client-IP": "203.0.113.11"}))
    assert other.status_code == 401
    failed = audit_rows(fly_app, "user.login_failed")
    assert [row.source_ip for row in failed] == ["203.0.113.10", "203.0.113.10", "203.0.113.11"]


def test_a_guesser_cannot_escape_the_login_throttle_by_inventing_client_headers(fly_app):
    client = fly_app.test_client()
    start_inside_one_minute_window()
    codes = [client.post("/api/v1/auth/login", json=LOGIN,
                         **through(STRANGER, **{"Fly-Client-IP": f"203.0.113.{n}", "X-Forwarded-For": f"192.0.2.{n}"}))
             .status_code for n in range(3)]
    assert codes == [401, 401, 429]
    assert {row.source_ip for row in audit_rows(fly_app, "user.login_failed")} == {STRANGER}


def test_key_changes_are_audited_with_the_client_address(fly_app):
    admin = new_key(fly_app, "admin")
    answer = fly_app.test_client().post(
        "/api/v1/credentials", json={"name": "made behind the proxy"},
        **through(FLY_PROXY, **{"Fly-Client-IP": "2001:db8::7", "X-Server-API-Key": admin}))
    assert answer.status_code in (200, 201)
    (created,) = [row for row in audit_rows(fly_app, "key.create") if row.actor != "test"]
    assert created.source_ip == "2001:db8::7"


# ---------------------------------------------------------------- the subscribe throttle


def test_the_subscribe_throttle_counts_each_client_behind_the_proxy_apart(fly_app):
    client = fly_app.test_client()
    answers = [client.post("/status/subscribe", data={"email": f"u{n}@example.com"},
                           **through(FLY_PROXY, **{"Fly-Client-IP": "203.0.113.20"})).status_code for n in range(11)]
    assert answers[:10] == [202] * 10 and answers[10] == 429
    other = client.post("/status/subscribe", data={"email": "other@example.com"},
                        **through(FLY_PROXY, **{"Fly-Client-IP": "203.0.113.21"}))
    assert other.status_code == 202


def test_the_subscribe_throttle_ignores_client_headers_from_an_untrusted_peer(fly_app):
    client = fly_app.test_client()
    answers = [client.post("/status/subscribe", data={"email": f"s{n}@example.com"},
                           **through("198.51.100.78", **{"Fly-Client-IP": f"203.0.113.{n}"})).status_code
               for n in range(11)]
    assert answers[:10] == [202] * 10 and answers[10] == 429


# ---------------------------------------------------------------- X-Forwarded-For, off Fly


@pytest.mark.parametrize("forwarded_for,client_address", [
    ("203.0.113.7", "203.0.113.7"),
    # A client's own entries sit to the left of what the proxies appended: the right-most
    # address that is not a trusted proxy is the client.
    ("6.6.6.6, 203.0.113.7", "203.0.113.7"),
    ("6.6.6.6, 203.0.113.7, 10.1.2.3", "203.0.113.7"),
    # Every hop trusted: the left-most is the client.
    ("10.9.9.9, 10.1.2.3", "10.9.9.9"),
    # An entry that is not an address ends the chain: the proxy itself stays the client.
    ("203.0.113.7, garbage", "10.0.0.2"),
    ("", "10.0.0.2"),
    # A scoped address cannot come from the internet (and would not fit the audit column).
    ("fe80::1%" + "x" * 80, "10.0.0.2"),
])
def test_x_forwarded_for_is_read_from_the_right_behind_a_trusted_proxy(make_app, forwarded_for, client_address):
    app = make_app(TRUSTED_PROXIES="10.0.0.0/8", LOGIN_ATTEMPTS_PER_MINUTE="1000")
    app.test_client().post("/api/v1/auth/login", json=LOGIN,
                           **through("10.0.0.2", **{"X-Forwarded-For": forwarded_for}))
    assert [row.source_ip for row in audit_rows(app, "user.login_failed")] == [client_address]


def test_off_fly_a_fly_client_ip_header_is_not_believed(make_app):
    # A proxy that is not Fly's passes a client's own Fly-Client-IP through untouched.
    app = make_app(TRUSTED_PROXIES="10.0.0.0/8", LOGIN_ATTEMPTS_PER_MINUTE="1000")
    app.test_client().post("/api/v1/auth/login", json=LOGIN,
                           **through("10.0.0.2", **{"Fly-Client-IP": "6.6.6.6", "X-Forwarded-For": "203.0.113.7"}))
    assert [row.source_ip for row in audit_rows(app, "user.login_failed")] == ["203.0.113.7"]


def test_an_ipv4_mapped_peer_is_matched_against_ipv4_networks(make_app):
    app = make_app(TRUSTED_PROXIES="10.0.0.0/8", LOGIN_ATTEMPTS_PER_MINUTE="1000")
    app.test_client().post("/api/v1/auth/login", json=LOGIN,
                           **through("::ffff:10.0.0.2", **{"X-Forwarded-For": "203.0.113.7"}))
    assert [row.source_ip for row in audit_rows(app, "user.login_failed")] == ["203.0.113.7"]


def test_without_trusted_proxies_every_client_header_is_ignored(make_app):
    app = make_app(LOGIN_ATTEMPTS_PER_MINUTE="1000")
    app.test_client().post("/api/v1/auth/login", json=LOGIN,
                           **through("127.0.0.1", **{"Fly-Client-IP": "6.6.6.6", "X-Forwarded-For": "6.6.6.7"}))
    assert [row.source_ip for row in audit_rows(app, "user.login_failed")] == ["127.0.0.1"]


# ---------------------------------------------------------------- settings and gunicorn


def test_on_fly_the_proxy_network_and_fly_client_ip_are_the_defaults(tmp_path):
    on_fly = Settings.from_env({"DATA_DIR": str(tmp_path), "FLY_APP_NAME": "mailgoat-controlplane"})
    assert on_fly.trusted_proxies == ("172.16.0.0/16",) and on_fly.client_address_header == "fly-client-ip"
    elsewhere = Settings.from_env({"DATA_DIR": str(tmp_path)})
    assert elsewhere.trusted_proxies == () and elsewhere.client_address_header == "x-forwarded-for"
    chosen = Settings.from_env({"DATA_DIR": str(tmp_path), "FLY_APP_NAME": "x",
                                "TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::1",
                                "CLIENT_ADDRESS_HEADER": "X-Forwarded-For"})
    assert chosen.trusted_proxies == ("10.0.0.0/8", "2001:db8::1/128")
    assert chosen.client_address_header == "x-forwarded-for"


@pytest.mark.parametrize("value", ["10.0.0.1/8", "not-a-network", "10.0.0.0/33"])
def test_a_malformed_trusted_proxy_is_refused_naming_the_variable(tmp_path, value):
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "TRUSTED_PROXIES": value})


def test_an_unknown_client_address_header_is_refused_naming_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="CLIENT_ADDRESS_HEADER must be one of fly-client-ip, x-forwarded-for"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "CLIENT_ADDRESS_HEADER": "X-Real-IP"})


@pytest.mark.parametrize("environ", [
    {"FLY_APP_NAME": "mailgoat-controlplane"},
    {},
    {"TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.1"},
    {"FLY_APP_NAME": "mailgoat-controlplane", "TRUSTED_PROXIES": "10.0.0.0/8"},
])
def test_gunicorn_believes_scheme_headers_from_the_same_proxies_as_the_app(monkeypatch, tmp_path, environ):
    # gunicorn's forwarded_allow_ips decides whether X-Forwarded-Proto sets wsgi.url_scheme; the
    # app decides the client address. One proxy trusted for one and not the other would be a lie.
    for name in ("FLY_APP_NAME", "TRUSTED_PROXIES"):
        monkeypatch.delenv(name, raising=False)
    # The config sets PROMETHEUS_MULTIPROC_DIR when loaded; keep that out of this process.
    monkeypatch.setattr(os, "environ", {**os.environ, **environ})
    gunicorn_conf = {}
    exec(compile((PROJECT_ROOT / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"), gunicorn_conf)
    gunicorn_trusts = {str(ipaddress.ip_network(n))
                       for n in validate_string_to_addr_list(gunicorn_conf["forwarded_allow_ips"])}
    assert gunicorn_trusts == set(Settings.from_env({"DATA_DIR": str(tmp_path), **environ}).trusted_proxies)
