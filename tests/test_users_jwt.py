"""Users: login, JWTs pinned to HS256 with kid-based rotation, roles."""
import base64
import json
import time

import jwt
import pytest
from click.testing import CliRunner

from controlplane import create_app
from controlplane.cli import main

PASSWORD = "correct horse battery staple"
SECRET, PREVIOUS = "j" * 40, "p" * 40


@pytest.fixture
def jwt_app(make_app):
    return make_app(JWT_SECRET=SECRET)


def make_user(app, email="ops@example.com", role="admin"):
    from controlplane.gateway.users import create_user

    with app.app_context():
        return create_user(email, PASSWORD, role, actor="test").id


def login(client, email="ops@example.com", password=PASSWORD):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password})


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_a_pinned_hs256_token_with_kid(jwt_app):
    make_user(jwt_app)
    response = login(jwt_app.test_client())
    assert response.status_code == 200
    data = response.get_json()["data"]
    header = jwt.get_unverified_header(data["token"])
    assert header["alg"] == "HS256" and header["kid"]
    assert data["user"] == {"id": 1, "email": "ops@example.com", "role": "admin"}
    assert data["expires_at"] > time.time()


def test_admin_token_manages_credentials(jwt_app):
    make_user(jwt_app)
    client = jwt_app.test_client()
    token = login(client).get_json()["data"]["token"]
    created = client.post("/api/v1/credentials", json={"name": "from-ui", "scopes": ["send"]}, headers=bearer(token))
    assert created.status_code == 201


def test_viewer_may_read_but_not_manage_or_send(jwt_app):
    make_user(jwt_app, "viewer@example.com", "viewer")
    client = jwt_app.test_client()
    token = login(client, "viewer@example.com").get_json()["data"]["token"]
    assert client.get("/api/v1/messages", headers=bearer(token)).status_code == 200
    assert client.get("/api/v1/credentials", headers=bearer(token)).status_code == 403
    send = client.post("/api/v1/send/message", json={"to": ["a@b.c"]}, headers=bearer(token))
    assert send.status_code == 403 and send.get_json()["data"]["code"] == "ApiKeyRequired"


def test_wrong_password_and_unknown_user_look_the_same(jwt_app):
    make_user(jwt_app)
    client = jwt_app.test_client()
    wrong = login(client, password="nope nope nope")
    unknown = login(client, email="who@example.com")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["data"] == unknown.get_json()["data"] == {
        "message": "Email or password is incorrect.", "code": "InvalidCredentials"}


def test_login_is_rate_limited_per_client(make_app):
    app = make_app(LOGIN_ATTEMPTS_PER_MINUTE="3")
    client = app.test_client()
    codes = [login(client, password="guess guess guess").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_tokens_signed_with_the_previous_secret_still_work(make_app, base_env):
    old = make_app(JWT_SECRET=PREVIOUS)
    make_user(old)
    token = login(old.test_client()).get_json()["data"]["token"]
    rotated = create_app({**base_env, "JWT_SECRET": SECRET, "JWT_SECRET_PREVIOUS": PREVIOUS})
    assert rotated.test_client().get("/api/v1/credentials", headers=bearer(token)).status_code == 200
    retired = create_app({**base_env, "JWT_SECRET": SECRET})
    response = retired.test_client().get("/api/v1/credentials", headers=bearer(token))
    assert response.status_code == 401 and response.get_json()["data"]["code"] == "InvalidToken"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_alg_none_and_algorithm_confusion_are_refused(jwt_app):
    from controlplane.gateway.users import kid_of

    make_user(jwt_app)
    client = jwt_app.test_client()
    claims = {"sub": "1", "role": "admin", "iss": "mailgoat-controlplane", "iat": int(time.time()),
              "exp": int(time.time()) + 600}
    none_token = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid_of(SECRET)})}.{_b64(claims)}."
    assert client.get("/api/v1/credentials", headers=bearer(none_token)).status_code == 401
    hs512 = jwt.encode(claims, SECRET, algorithm="HS512", headers={"kid": kid_of(SECRET)})
    assert client.get("/api/v1/credentials", headers=bearer(hs512)).status_code == 401
    forged = jwt.encode(claims, "some-other-secret-of-enough-length!!", algorithm="HS256",
                        headers={"kid": kid_of(SECRET)})
    assert client.get("/api/v1/credentials", headers=bearer(forged)).status_code == 401


def test_expired_tokens_are_refused(jwt_app):
    from controlplane.gateway.users import kid_of

    make_user(jwt_app)
    claims = {"sub": "1", "role": "admin", "iss": "mailgoat-controlplane", "iat": 1, "exp": 2}
    expired = jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": kid_of(SECRET)})
    assert jwt_app.test_client().get("/api/v1/credentials", headers=bearer(expired)).status_code == 401


def test_cli_creates_users_and_refuses_weak_passwords(app, base_env):
    runner = CliRunner()
    ok = runner.invoke(main, ["users", "create", "--email", "a@example.com", "--role", "operator",
                              "--password", PASSWORD], env=base_env)
    assert ok.exit_code == 0 and "(operator) created" in ok.output
    weak = runner.invoke(main, ["users", "create", "--email", "b@example.com", "--password", "short"], env=base_env)
    assert weak.exit_code == 1 and "WeakPassword" in weak.output
    dup = runner.invoke(main, ["users", "create", "--email", "a@example.com", "--password", PASSWORD], env=base_env)
    assert dup.exit_code == 1 and "UserExists" in dup.output


def test_passwords_are_stored_as_scrypt_hashes(jwt_app):
    from controlplane.extensions import db
    from controlplane.gateway.models import User

    make_user(jwt_app)
    with jwt_app.app_context():
        stored = db.session.get(User, 1).password_hash
    assert stored.startswith("scrypt$") and PASSWORD not in stored
