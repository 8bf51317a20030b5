"""Bad input gets a JSON error with a code and message, never HTML or a traceback."""
import pytest
from sqlalchemy.exc import IntegrityError

from tests.conftest import free_port, new_key
from tests.doubles.tcp_proxy import TcpProxy


def assert_json_error(response, status, code):
    assert response.status_code == status
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["status"] == "error"
    assert body["data"]["code"] == code and body["error"] == code
    assert body["message"] and body["data"]["message"] == body["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert "<html" not in response.get_data(as_text=True).lower()
    return body


def test_unknown_route_is_json_404(client):
    body = assert_json_error(client.get("/no/such/page"), 404, "NotFound")
    assert body["request_id"]


def test_wrong_method_is_json_405_with_allow(client):
    response = client.delete("/health")
    assert_json_error(response, 405, "MethodNotAllowed")
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_json_413(make_app):
    app = make_app(MAX_REQUEST_BYTES="2048")
    response = app.test_client().post("/health", data=b"x" * 4096, content_type="application/octet-stream")
    assert_json_error(response, 413, "RequestEntityTooLarge")


def test_unhandled_exception_is_json_500_with_request_id_and_no_detail(make_app):
    app = make_app()

    @app.get("/explode")
    def explode():
        raise RuntimeError("secret internals must not leak")

    response = app.test_client().get("/explode", headers={"X-Request-Id": "req-abc-123"})
    body = assert_json_error(response, 500, "InternalServerError")
    assert body["request_id"] == "req-abc-123"
    assert response.headers["X-Request-Id"] == "req-abc-123"
    assert "secret internals" not in response.get_data(as_text=True)


# ---------------------------------------------------------------- URLs PostgreSQL cannot store


def test_a_nul_byte_in_the_path_is_refused_with_400_before_any_route(client):
    assert_json_error(client.get("/status/subscriptions/%00/confirm"), 400, "InvalidCharacters")


def test_a_nul_byte_in_the_query_string_is_refused_with_400(client):
    assert_json_error(client.get("/history?page=1%00"), 400, "InvalidCharacters")


def test_an_encoded_lone_surrogate_in_the_url_is_refused_with_400(client):
    assert_json_error(client.get("/status/subscriptions/%ED%A0%80/confirm"), 400, "InvalidCharacters")
    assert_json_error(client.get("/history?page=%ED%A0%80"), 400, "InvalidCharacters")


def test_bytes_that_are_not_utf8_in_the_query_are_refused_with_400(client):
    assert_json_error(client.get("/api/v1/messages?tag=%FF"), 400, "InvalidCharacters")


def test_ordinary_unicode_in_the_url_still_reaches_the_route(client):
    assert_json_error(client.get("/status/subscriptions/caf%C3%A9/confirm",
                                 headers={"Accept": "application/json"}), 404, "SubscriptionNotFound")


# ---------------------------------------------------------------- the database unreachable


@pytest.fixture
def app_without_database(make_app):
    """An app whose database URL points at a local port where nothing listens."""
    return make_app(migrate=False, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/gone",
                    DB_CONNECT_TIMEOUT_SECONDS="1")


@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/v1/send/message", {"to": ["a@example.com"], "from": "x@mailgoat.dev", "plain_body": "b"}),
    ("get", "/api/v1/credentials", None),
    ("post", "/api/v1/auth/login", {"email": "a@example.com", "password": "p" * 12}),
    ("get", "/api/v1/messages", None),
])
def test_an_unreachable_database_answers_503_with_retry_after(app_without_database, method, path, body):
    headers = {"X-Server-API-Key": "mg_" + "a" * 32}
    response = getattr(app_without_database.test_client(), method)(path, json=body, headers=headers)
    assert_json_error(response, 503, "DatabaseUnavailable")
    assert int(response.headers["Retry-After"]) > 0


def test_a_database_outage_is_a_warning_without_the_password(make_app, caplog):
    app = make_app(migrate=False, DATABASE_URL=f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/gone")
    response = app.test_client().get("/api/v1/credentials", headers={"X-Server-API-Key": "mg_" + "a" * 32})
    assert response.status_code == 503
    assert "database unavailable" in caplog.text and "s3cret-pw" not in caplog.text


def test_an_integrity_error_is_still_a_500_and_not_called_an_outage(make_app):
    app = make_app()

    @app.get("/duplicate")
    def duplicate():
        raise IntegrityError("INSERT INTO t VALUES (1)", {}, Exception("duplicate key value"))

    assert_json_error(app.test_client().get("/duplicate"), 500, "InternalServerError")


@pytest.mark.postgres
def test_a_database_that_goes_away_mid_life_answers_503_then_recovers(make_app, postgres_url):
    proxy = TcpProxy.for_database(postgres_url)
    try:
        app = make_app(DATABASE_URL=proxy.url_for(postgres_url), DB_CONNECT_TIMEOUT_SECONDS="1")
        key = new_key(app, "admin")
        client, headers = app.test_client(), {"X-Server-API-Key": key}
        assert client.get("/api/v1/credentials", headers=headers).status_code == 200
        proxy.cut()  # open connections reset, new ones refused
        response = client.get("/api/v1/credentials", headers=headers)
        assert_json_error(response, 503, "DatabaseUnavailable")
        assert response.headers["Retry-After"]
        proxy.restore()
        assert client.get("/api/v1/credentials", headers=headers).status_code == 200
    finally:
        proxy.stop()
