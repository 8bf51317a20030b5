"""API keys: shown once, stored as HMACs, scoped, revocable, rotatable across salts."""
import hashlib
import hmac

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from controlplane import create_app
from controlplane.cli import main
from controlplane.extensions import db
from controlplane.gateway.models import ApiKey, AuditEntry
from tests.conftest import create_api_key


def auth(key, style="postal"):
    return {"X-Server-API-Key": key} if style == "postal" else {"Authorization": f"Bearer {key}"}


def test_admin_creates_a_key_shown_once_and_stored_only_as_hmac(app, client, admin_key):
    response = client.post("/api/v1/credentials", json={"name": "agent", "scopes": ["send", "read"]},
                           headers=auth(admin_key))
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "success"
    created = body["data"]
    assert set(created) >= {"id", "key", "name"} and created["name"] == "agent"
    assert created["key"].startswith(created["prefix"])
    with app.app_context():
        row = db.session.get(ApiKey, int(created["id"]))
        salt = app.extensions["controlplane.settings"].api_key_salt
        assert row.key_hash == hmac.new(salt.encode(), created["key"].encode(), hashlib.sha256).hexdigest()
        assert created["key"] not in str({c.name: getattr(row, c.name) for c in ApiKey.__table__.columns})
    listed = client.get("/api/v1/credentials", headers=auth(admin_key)).get_json()["data"]
    assert [k["name"] for k in listed] == ["admin key", "agent"]
    assert all("key" not in k for k in listed)


def test_keys_work_in_postal_header_and_bearer(client, admin_key):
    for style in ("postal", "bearer"):
        assert client.get("/api/v1/credentials", headers=auth(admin_key, style)).status_code == 200


def test_missing_key_is_access_denied(client):
    response = client.get("/api/v1/credentials")
    body = response.get_json()
    assert response.status_code == 401
    assert body["data"] == {"message": "Must be authenticated as a server.", "code": "AccessDenied"}
    assert body["error"] == "AccessDenied" and body["status"] == "error"


def test_unknown_key_is_invalid_server_api_key(client):
    response = client.get("/api/v1/credentials", headers=auth("mg_" + "x" * 32))
    assert response.status_code == 401
    assert response.get_json()["data"]["code"] == "InvalidServerAPIKey"
    assert response.get_json()["data"]["message"] == "The API token provided in X-Server-API-Key was not valid."


def test_wrong_scope_is_403(client, sending_key):
    response = client.get("/api/v1/credentials", headers=auth(sending_key))
    assert response.status_code == 403 and response.get_json()["data"]["code"] == "InsufficientScope"


def test_revocation_takes_effect_on_the_next_request(client, make_key, admin_key):
    key_id, key = make_key("admin", name="doomed")
    assert client.get("/api/v1/credentials", headers=auth(key)).status_code == 200
    response = client.delete(f"/api/v1/credentials/{key_id}", headers=auth(admin_key))
    assert response.status_code == 200 and response.get_json()["data"]["revoked"] is True
    assert client.get("/api/v1/credentials", headers=auth(key)).status_code == 401


def test_revoking_an_unknown_key_is_404(client, admin_key):
    response = client.delete("/api/v1/credentials/999", headers=auth(admin_key))
    assert response.status_code == 404 and response.get_json()["data"]["code"] == "CredentialNotFound"


def test_bad_credential_requests_get_422_with_a_code(client, admin_key):
    cases = [
        ({"name": "x", "scopes": ["root"]}, "InvalidScopes"),
        ({"name": "", "scopes": ["send"]}, "InvalidName"),
        ({"name": "x", "allowed_ips": ["not-a-network"]}, "InvalidAllowedIps"),
        ({"name": "x", "allowed_from_domains": ["@nope"]}, "InvalidFromDomains"),
    ]
    for payload, code in cases:
        response = client.post("/api/v1/credentials", json=payload, headers=auth(admin_key))
        assert response.status_code == 422, payload
        assert response.get_json()["data"]["code"] == code
    response = client.post("/api/v1/credentials", data="{not json", content_type="application/json",
                           headers=auth(admin_key))
    assert response.status_code == 400 and response.get_json()["data"]["code"] == "InvalidJSON"


def test_ip_allowlist(client, make_key):
    _, key = make_key("admin", allowed_ips=["10.0.0.0/8"])
    response = client.get("/api/v1/credentials", headers=auth(key))
    assert response.status_code == 403 and response.get_json()["data"]["code"] == "IpNotAllowed"
    _, local = make_key("admin", allowed_ips=["127.0.0.0/8"])
    assert client.get("/api/v1/credentials", headers=auth(local)).status_code == 200


def test_key_actions_are_audited_with_who_and_where(app, client, admin_key, make_key):
    key_id, _ = make_key("send", name="audited")
    client.delete(f"/api/v1/credentials/{key_id}", headers=auth(admin_key))
    with app.app_context():
        entries = db.session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        revoke = [e for e in entries if e.action == "key.revoke"][0]
        assert revoke.target == f"key:{key_id}" and revoke.actor.startswith("key:")
        assert revoke.source_ip == "127.0.0.1" and revoke.at is not None


def test_salt_rotation_keeps_old_keys_working_and_rehashes_them(make_app, base_env):
    old_salt, new_salt = "o" * 40, "n" * 40
    app = make_app(API_KEY_SALT=old_salt)
    key_id, key = create_api_key(app, "admin", name="k")
    rotated = create_app({**base_env, "API_KEY_SALT": new_salt, "API_KEY_SALT_PREVIOUS": old_salt})
    runner = CliRunner()
    env = {**base_env, "API_KEY_SALT": new_salt, "API_KEY_SALT_PREVIOUS": old_salt}
    assert "1 active key(s) still on a previous salt" in runner.invoke(main, ["keys", "salt-status"], env=env).output
    assert rotated.test_client().get("/api/v1/credentials", headers=auth(key)).status_code == 200
    with rotated.app_context():
        row = db.session.get(ApiKey, key_id)
        assert row.key_hash == hmac.new(new_salt.encode(), key.encode(), hashlib.sha256).hexdigest()
    assert "0 active key(s)" in runner.invoke(main, ["keys", "salt-status"], env=env).output
    # Without the previous salt configured, a key that was never re-hashed would fail; this one was.
    fresh = create_app({**base_env, "API_KEY_SALT": new_salt})
    assert fresh.test_client().get("/api/v1/credentials", headers=auth(key)).status_code == 200


def test_cli_create_list_rotate_revoke(app, base_env):
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--name", "ci-bot", "--scopes", "send,read",
                                   "--from-domain", "example.com"], env=base_env)
    assert created.exit_code == 0, created.output
    key = next(line.split()[1] for line in created.output.splitlines() if line.startswith("key "))
    listed = runner.invoke(main, ["keys", "list"], env=base_env).output
    assert "ci-bot" in listed and "send,read" in listed and key not in listed
    rotated = runner.invoke(main, ["keys", "rotate", "1"], env=base_env)
    assert rotated.exit_code == 0 and "key 1 revoked" in rotated.output
    assert runner.invoke(main, ["keys", "revoke", "2"], env=base_env).exit_code == 0
    bad = runner.invoke(main, ["keys", "create", "--name", "x", "--scopes", "root"], env=base_env)
    assert bad.exit_code == 1 and "InvalidScopes" in bad.output and "Traceback" not in bad.output
    table = [line for line in runner.invoke(main, ["keys", "list"], env=base_env).output.splitlines()
             if not line.startswith("{")]  # log lines share the captured output
    states = [line.split()[-1] for line in table[1:]]
    assert states == ["revoked", "revoked"]


# ---------------------------------------------------------------- the Node CLI, run unchanged (CONTRACTS.md §2)


def test_credential_ids_are_json_strings_in_every_answer(client, admin_key):
    created = client.post("/api/v1/credentials", json={"name": "cli", "scopes": ["send"]},
                          headers=auth(admin_key)).get_json()["data"]
    assert isinstance(created["id"], str) and created["id"].isdigit()
    listed = client.get("/api/v1/credentials", headers=auth(admin_key)).get_json()["data"]
    assert all(isinstance(k["id"], str) for k in listed)
    revoked = client.delete(f"/api/v1/credentials/{created['id']}", headers=auth(admin_key)).get_json()["data"]
    assert revoked["id"] == created["id"]


def test_the_node_cli_revokes_a_key_by_the_string_id_it_was_given(client, admin_key):
    # `mailgoat keys revoke N`: create, list, find the key by `id === N`, DELETE it, list again.
    created = client.post("/api/v1/credentials", json={"name": "doomed", "scopes": ["send"]},
                          headers=auth(admin_key)).get_json()["data"]
    wanted = created["id"]
    listed = client.get("/api/v1/credentials", headers=auth(admin_key)).get_json()["data"]
    assert [k for k in listed if k["id"] == wanted]
    response = client.delete(f"/api/v1/credentials/{wanted}", headers=auth(admin_key))
    assert response.status_code == 200 and response.get_json()["data"]["id"] == wanted
    assert response.get_json()["data"]["revoked"] is True and response.get_json()["data"]["status"] == "revoked"
    after = client.get("/api/v1/credentials", headers=auth(admin_key)).get_json()["data"]
    assert not [k for k in after if k["id"] == wanted]


def test_the_default_credential_list_holds_active_keys_only(client, admin_key, make_key):
    key_id, _ = make_key("send", name="gone")
    client.delete(f"/api/v1/credentials/{key_id}", headers=auth(admin_key))
    listed = client.get("/api/v1/credentials", headers=auth(admin_key)).get_json()["data"]
    assert [k["name"] for k in listed] == ["admin key"]
    assert all(k["status"] == "active" and k["revoked"] is False for k in listed)


def test_revoked_keys_are_listed_on_request_and_marked(client, admin_key, make_key):
    key_id, _ = make_key("send", name="gone")
    client.delete(f"/api/v1/credentials/{key_id}", headers=auth(admin_key))
    listed = client.get("/api/v1/credentials?include_revoked=true", headers=auth(admin_key)).get_json()["data"]
    by_name = {k["name"]: k for k in listed}
    assert by_name["gone"]["status"] == "revoked" and by_name["gone"]["revoked"] is True
    assert by_name["gone"]["revoked_at"] and by_name["admin key"]["status"] == "active"


@pytest.mark.parametrize("key_id", ["abc", "%C2%B3", "-1", "0", "99999999999999999999999"])
def test_revoking_a_credential_id_that_cannot_exist_is_404(client, admin_key, key_id):
    response = client.delete(f"/api/v1/credentials/{key_id}", headers=auth(admin_key))
    assert response.status_code == 404 and response.get_json()["data"]["code"] == "CredentialNotFound"
