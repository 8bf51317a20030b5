"""The routes declared in controlplane/gateway/schemas.py (issue 12 item 1): their models refuse
what the hand-written checks let through, with the codes those checks answered."""
import pytest

from tests.conftest import new_key
from tests.test_errors import assert_json_error


def auth(key):
    return {"X-Server-API-Key": key}


def assert_parameter_error(response, field):
    """Postal's shape for a bad parameter: 422, envelope status parameter-error, the field named."""
    assert response.status_code == 422
    body = response.get_json()
    assert body["status"] == "parameter-error" and body["data"]["code"] == "ParameterError"
    assert body["data"]["message"].startswith(f"`{field}` ")


@pytest.mark.parametrize("sender", ["noreply@example.com\r\nBcc: victim@example.com", "a@b@c", "not-an-email@"])
def test_a_default_sender_that_is_not_one_address_is_refused_with_422(client, admin_key, sender):
    response = client.post("/api/v1/credentials", json={"name": "k", "default_sender": sender}, headers=auth(admin_key))
    assert_json_error(response, 422, "InvalidDefaultSender")


def test_a_default_sender_longer_than_its_column_is_refused_with_422(client, admin_key):
    sender = "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com"  # valid syntax, 310 characters
    response = client.post("/api/v1/credentials", json={"name": "k", "default_sender": sender}, headers=auth(admin_key))
    assert_json_error(response, 422, "InvalidDefaultSender")


def test_null_optional_fields_are_taken_as_absent(client, admin_key, make_app):
    # Found by the fuzzer: a length limit applied to null answered 500.
    response = client.post("/api/v1/credentials", json={"name": "k", "default_sender": None, "allowed_ips": None,
                                                         "rate_limits": None, "monthly_quota": None},
                           headers=auth(admin_key))
    assert response.status_code == 201, response.get_json()
    app = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS="true")
    headers = auth(new_key(app, "send", name="nulls"))
    hook = app.test_client().post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/", "name": None,
                                                             "events": None}, headers=headers)
    assert hook.status_code == 201 and hook.get_json()["data"]["name"] == "http://127.0.0.1:9/"
    test = app.test_client().post("/api/v1/webhooks/test", json={"url": "http://127.0.0.1:9/", "secret": None},
                                  headers=headers)
    assert test.status_code == 200


@pytest.mark.parametrize("networks", [[1], [True], [{"cidr": "10.0.0.0/8"}]])
def test_an_allowed_ip_that_is_not_a_string_is_refused_with_422(client, admin_key, networks):
    # ipaddress.ip_network(1) is 0.0.0.1/32: a number used to become a one-address allowlist.
    response = client.post("/api/v1/credentials", json={"name": "k", "allowed_ips": networks}, headers=auth(admin_key))
    assert_json_error(response, 422, "InvalidAllowedIps")


@pytest.mark.parametrize("limit", ["5", 5.0, True])
def test_a_rate_limit_that_is_not_a_json_integer_is_refused_with_422(client, admin_key, limit):
    response = client.post("/api/v1/credentials", json={"name": "k", "rate_limits": {"hour": limit}},
                           headers=auth(admin_key))
    assert_json_error(response, 422, "InvalidLimits")


@pytest.fixture
def hooks(make_app):
    app = make_app(WEBHOOK_ALLOW_PRIVATE_TARGETS="true")
    return app.test_client(), auth(new_key(app, "send", name="hooks"))


def test_a_webhook_url_longer_than_its_column_is_refused_with_422(hooks):
    client, headers = hooks
    url = "https://example.com/" + "a" * 2048
    assert_json_error(client.post("/api/v1/webhooks", json={"url": url, "name": "long"}, headers=headers),
                      422, "InvalidWebhookUrl")


@pytest.mark.parametrize("url", [123, ["https://example.com/"], {"href": "https://example.com/"}])
def test_a_webhook_url_that_is_not_a_string_is_refused_with_422(hooks, url):
    client, headers = hooks
    assert_json_error(client.post("/api/v1/webhooks", json={"url": url}, headers=headers), 422, "InvalidWebhookUrl")
    assert_json_error(client.post("/api/v1/webhooks/test", json={"url": url}, headers=headers),
                      422, "InvalidWebhookUrl")


def test_a_webhook_name_with_a_line_break_is_refused_with_422(hooks):
    client, headers = hooks
    response = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/", "name": "a\r\nb"}, headers=headers)
    assert_json_error(response, 422, "InvalidName")


def test_a_webhook_without_a_name_is_named_after_its_url_even_a_long_one(hooks):
    client, headers = hooks
    url = "http://127.0.0.1:9/" + "p" * 200
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=headers)
    assert response.status_code == 201
    assert response.get_json()["data"]["name"] == url[:120]


@pytest.mark.parametrize("path", ["/api/v1/messages/message", "/api/v1/messages/deliveries", "/api/v1/messages/delete"])
@pytest.mark.parametrize("body", [{}, {"id": ""}, {"id": None}, {"id": True}, {"id": 1.5}, {"id": ["1"]}])
def test_a_missing_or_mistyped_message_id_is_a_parameter_error(client, sending_key, path, body):
    assert_parameter_error(client.post(path, json=body, headers=auth(sending_key)), "id")


@pytest.mark.parametrize("expansions", [7, {"status": True}])
def test_expansions_of_the_wrong_type_are_refused_with_422(client, sending_key, expansions):
    response = client.post("/api/v1/messages/message", json={"id": "x", "_expansions": expansions},
                           headers=auth(sending_key))
    assert_parameter_error(response, "_expansions")


def test_a_login_email_longer_than_its_column_is_refused_with_422(client):
    response = client.post("/api/v1/auth/login", json={"email": "a" * 400 + "@example.com", "password": "p" * 12})
    assert_parameter_error(response, "email")
