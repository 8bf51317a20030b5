"""Hostile input on every route, public ones included: each refusal is a 4xx with a code, never a 500.

The causes issue 12 measured, each replayed as the request that broke: Unicode digits that pass
`str.isdigit()`, NUL bytes and lone surrogates (PostgreSQL cannot store the first, nothing can
encode the second), integers past 64 bits, JSON nested 1,000 deep. Then the public routes that
the OpenAPI document does not describe, fuzzed with a hand-made list of hostile values.
"""
import base64
import itertools
import json
from urllib.parse import quote

import pytest

from tests.test_errors import assert_json_error

DEEP_JSON = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
HUGE = "99999999999999999999999"
SEND = {"to": ["a@example.com"], "from": "x@mailgoat.dev", "subject": "s", "plain_body": "b"}


def auth(key):
    return {"X-Server-API-Key": key}


_CLIENT_ADDRESSES = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))


def post_json(client, path, text: str, headers=None):
    # Each request from its own address, so the login and subscribe throttles do not answer first.
    return client.post(path, data=text, content_type="application/json", headers=headers or {},
                       environ_base={"REMOTE_ADDR": next(_CLIENT_ADDRESSES)})


# ---------------------------------------------------------------- Unicode digits


def test_a_superscript_history_page_is_refused_with_422(client):
    assert_json_error(client.get("/history?page=%C2%B3", headers={"Accept": "application/json"}), 422, "InvalidPage")


def test_a_superscript_badge_period_is_refused_with_422(client):
    assert_json_error(client.get("/badges/api/uptime.svg?days=%C2%B2"), 422, "InvalidPeriod")


def test_a_superscript_message_id_is_not_found(client, sending_key):
    assert_json_error(client.get("/api/v1/messages/%C2%B3", headers=auth(sending_key)), 404, "MessageNotFound")


def test_a_superscript_list_limit_is_refused_with_400(client, sending_key):
    assert_json_error(client.get("/api/v1/messages?limit=%C2%B3", headers=auth(sending_key)), 400, "InvalidLimit")


def test_a_superscript_usage_key_id_is_refused_with_400(client, admin_key):
    assert_json_error(client.get("/api/v1/usage?key_id=%C2%B3", headers=auth(admin_key)), 400, "InvalidKeyId")


# ---------------------------------------------------------------- integers past 64 bits


@pytest.mark.parametrize("method,path,code", [
    ("get", f"/api/v1/messages/{HUGE}", "MessageNotFound"),
    ("get", f"/api/v1/inbound/{HUGE}", "NotFound"),
    ("delete", f"/api/v1/credentials/{HUGE}", "CredentialNotFound"),
    ("delete", f"/api/v1/silences/{HUGE}", "NotFound"),
    ("delete", f"/api/v1/webhooks/{HUGE}", "NotFound"),
    ("get", f"/incidents/{HUGE}", "NotFound"),
])
def test_an_id_past_64_bits_in_the_path_is_404(client, admin_key, method, path, code):
    response = getattr(client, method)(path, headers={**auth(admin_key), "Accept": "application/json"})
    assert_json_error(response, 404, code)


def test_a_cursor_decoding_to_a_huge_number_is_refused_with_400(client, sending_key):
    cursor = base64.urlsafe_b64encode(b"1" + b"0" * 30).decode().rstrip("=")
    response = client.get(f"/api/v1/messages?cursor={cursor}", headers=auth(sending_key))
    assert_json_error(response, 400, "InvalidCursor")


def test_a_cursor_decoding_to_unicode_digits_is_refused_with_400(client, sending_key):
    cursor = base64.urlsafe_b64encode("³".encode()).decode().rstrip("=")
    response = client.get(f"/api/v1/messages?cursor={cursor}", headers=auth(sending_key))
    assert_json_error(response, 400, "InvalidCursor")


def test_a_usage_key_id_past_64_bits_is_refused_with_400(client, admin_key):
    assert_json_error(client.get(f"/api/v1/usage?key_id={HUGE}", headers=auth(admin_key)), 400, "InvalidKeyId")


@pytest.mark.parametrize("limits", [{"burst": 10 ** 30}, {"hour": 2 ** 31}, {"today": 2 ** 63}])
def test_a_rate_limit_past_the_column_is_refused_with_422(client, admin_key, limits):
    response = client.post("/api/v1/credentials", json={"name": "big", "rate_limits": limits}, headers=auth(admin_key))
    assert_json_error(response, 422, "InvalidLimits")


def test_a_monthly_quota_past_the_column_is_refused_with_422(client, admin_key):
    response = client.post("/api/v1/credentials", json={"name": "big", "monthly_quota": 10 ** 30},
                           headers=auth(admin_key))
    assert_json_error(response, 422, "InvalidLimits")


def test_a_deployment_id_past_64_bits_is_refused_with_422(client, admin_key):
    response = client.post("/api/v1/deployments", json={"id": 10 ** 30, "status": "succeeded"},
                           headers=auth(admin_key))
    assert_json_error(response, 422, "InvalidDeployment")


def test_a_huge_numeric_message_id_is_not_found(client, sending_key):
    response = client.post("/api/v1/messages/message", json={"id": 10 ** 30}, headers=auth(sending_key))
    assert response.get_json()["data"]["code"] == "MessageNotFound" and response.status_code < 500


# ---------------------------------------------------------------- NUL bytes and lone surrogates


def test_a_nul_byte_in_a_subscription_address_is_refused_with_400(client):
    response = client.post("/status/subscribe", json={"email": "a\u0000b@example.com"})
    assert_json_error(response, 400, "InvalidCharacters")


def test_a_nul_byte_in_a_subscribe_form_is_refused_with_400(client):
    response = client.post("/status/subscribe", data={"email": "a\u0000b@example.com"},
                           headers={"Accept": "application/json"})
    assert_json_error(response, 400, "InvalidCharacters")


def test_a_nul_byte_in_the_login_email_is_refused_with_400(client):
    response = client.post("/api/v1/auth/login", json={"email": "a\u0000@example.com", "password": "x" * 12})
    assert_json_error(response, 400, "InvalidCharacters")


@pytest.mark.parametrize("field", ["subject", "tag", "plain_body", "html_body", "reply_to", "sender"])
def test_a_lone_surrogate_in_a_send_field_is_refused_before_it_is_stored(client, sending_key, field):
    text = json.dumps({**SEND, field: "x"}).replace('"x"', '"\\ud800"', 1)
    response = post_json(client, "/api/v1/send/message", text, auth(sending_key))
    body = assert_json_error(response, 400, "InvalidCharacters")
    assert field in body["message"]


@pytest.mark.parametrize("field,value", [("subject", "a\u0000b"), ("tag", "\u0000"), ("to", ["a\u0000@example.com"])])
def test_a_nul_byte_in_a_send_field_is_refused_with_400(client, sending_key, field, value):
    response = client.post("/api/v1/send/message", json={**SEND, field: value}, headers=auth(sending_key))
    assert_json_error(response, 400, "InvalidCharacters")


def test_a_nul_byte_in_a_parameter_name_is_refused_with_400(client, sending_key):
    response = client.post("/api/v1/send/message", json={**SEND, "headers": {"X-\u0000": "v"}}, headers=auth(sending_key))
    assert_json_error(response, 400, "InvalidCharacters")


def test_a_nul_byte_in_postals_params_field_is_refused_with_400(client, sending_key):
    response = client.post("/api/v1/send/message", data={"params": json.dumps({**SEND, "subject": "\u0000"})},
                           headers=auth(sending_key))
    assert_json_error(response, 400, "InvalidCharacters")


def test_a_nul_byte_in_a_credential_name_is_refused_with_400(client, admin_key):
    response = client.post("/api/v1/credentials", json={"name": "a\u0000b"}, headers=auth(admin_key))
    assert_json_error(response, 400, "InvalidCharacters")


def test_a_nul_byte_in_a_tag_filter_is_refused_with_400(client, sending_key):
    assert_json_error(client.get("/api/v1/messages?tag=%00", headers=auth(sending_key)), 400, "InvalidCharacters")


# ---------------------------------------------------------------- deep JSON


@pytest.mark.parametrize("document", [DEEP_JSON, DEEP_OBJECT])
def test_json_nested_1000_deep_is_refused_on_the_public_login(client, document):
    assert_json_error(post_json(client, "/api/v1/auth/login", document), 400, "JSONTooDeep")


def test_json_nested_1000_deep_is_refused_on_send(client, sending_key):
    body = json.dumps({**SEND, "headers": {}}).replace("{}", DEEP_OBJECT)
    assert_json_error(post_json(client, "/api/v1/send/message", body, auth(sending_key)), 400, "JSONTooDeep")


def test_json_nested_1000_deep_is_refused_on_subscribe(client):
    assert_json_error(post_json(client, "/status/subscribe", DEEP_JSON), 400, "JSONTooDeep")


def test_deep_json_inside_postals_params_field_is_refused(client, sending_key):
    response = client.post("/api/v1/send/message", data={"params": DEEP_JSON}, headers=auth(sending_key))
    assert_json_error(response, 400, "JSONTooDeep")


def test_brackets_inside_strings_do_not_count_as_nesting(client, sending_key):
    response = client.post("/api/v1/send/message", json={**SEND, "subject": "[" * 1000 + "{" * 1000},
                           headers=auth(sending_key))
    assert response.status_code == 200, response.get_json()


def test_nan_is_not_json_and_is_refused_with_400(client, admin_key):
    response = post_json(client, "/api/v1/credentials", '{"name": "n", "monthly_quota": NaN}', auth(admin_key))
    assert_json_error(response, 400, "InvalidJSON")


# ---------------------------------------------------------------- public routes, hostile values

HOSTILE_TEXT = ["³", "²", "١٢", "\u0000", "%00", "\ud800", "-1", "0", HUGE, "1e400", "x" * 10_000, "[]", "{}",
                "' OR 1=1 --", "<script>", "\r\nX-Injected: 1", "NaN", " ", ""]
HOSTILE_JSON_VALUES = [None, True, 0, -1, 10 ** 30, 1.5e308, "", "\u0000", "\ud800", "x" * 10_000, [], {},
                       ["a"], {"a": "b"}, [[[[[[]]]]]]]
PUBLIC_QUERY_ROUTES = [("/history", "page"), ("/badges/api/uptime.svg", "days"), ("/status", "x"),
                       ("/api/v2/summary.json", "x"), ("/api/v2/status.json", "x"), ("/history.atom", "x"),
                       ("/api/v2/incidents.json", "x")]
PUBLIC_PATH_ROUTES = ["/status/subscriptions/{}/confirm", "/status/subscriptions/{}/unsubscribe", "/incidents/{}",
                      "/badges/{}/uptime.svg", "/api/v1/messages/{}"]
PUBLIC_JSON_ROUTES = [("/status/subscribe", "email"), ("/api/v1/auth/login", "email"),
                      ("/api/v1/auth/login", "password")]


def assert_refused_cleanly(response):
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400 and response.content_type == "application/json":
        assert response.get_json()["data"]["code"]


@pytest.mark.parametrize("path,name", PUBLIC_QUERY_ROUTES)
def test_public_query_parameters_never_answer_5xx(client, path, name):
    for value in HOSTILE_TEXT:
        encoded = quote(value.encode("utf-8", "surrogatepass"))  # a lone surrogate as the bytes ED A0 80
        assert_refused_cleanly(client.get(f"{path}?{name}={encoded}"))


@pytest.mark.parametrize("template", PUBLIC_PATH_ROUTES)
def test_public_path_segments_never_answer_5xx(client, template):
    for value in HOSTILE_TEXT:
        segment = value.encode("utf-8", "surrogatepass").hex() if value in ("\ud800", "\u0000") else value
        for path in (template.format(segment or "-"), template.format("%ED%A0%80"), template.format("%00")):
            assert_refused_cleanly(client.get(path, headers={"Accept": "application/json"}))


@pytest.mark.parametrize("path,field", PUBLIC_JSON_ROUTES)
def test_public_json_fields_of_any_type_never_answer_5xx(client, path, field):
    for value in HOSTILE_JSON_VALUES:
        other = {"email": "a@example.com", "password": "p" * 12}
        text = json.dumps({**other, field: value})
        assert_refused_cleanly(post_json(client, path, text, {"Accept": "application/json"}))
    for document in ("[1]", '"text"', "null", "1e400", DEEP_JSON, "{", "\u0000", "\xff"):
        assert_refused_cleanly(post_json(client, path, document, {"Accept": "application/json"}))
