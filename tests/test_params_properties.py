"""Properties of the one parameter layer (controlplane/gateway/params.py), checked with hypothesis.

Whatever arrives, the layer either hands the route a dict it can store or raises a GatewayError
with a 400 code: never another exception, never a NUL byte or a lone surrogate, never an integer
that PostgreSQL's BIGINT cannot hold.
"""
import json

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.routing import ValidationError

from controlplane.gateway.envelope import GatewayError
from controlplane.gateway.params import (BIGINT_MAX, BIGINT_MIN, MAX_JSON_DEPTH, BoundedIntConverter, json_depth,
                                         parse_int, refuse_unstorable_text, request_params)

bare_app = Flask(__name__)
bare_app.url_map.converters["int"] = BoundedIntConverter


@bare_app.get("/things/<int:thing_id>")
def thing(thing_id: int):
    return {"id": thing_id}


def is_unstorable(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def contains_unstorable(value) -> bool:
    if isinstance(value, str):
        return is_unstorable(value)
    if isinstance(value, dict):
        return any(contains_unstorable(k) or contains_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_unstorable(v) for v in value)
    return False


def true_depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((true_depth(v) for v in value), default=0)
    return 0


any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=30,
)


def params_of(body, content_type: str = "application/json"):
    with bare_app.test_request_context("/", method="POST", data=body, content_type=content_type):
        return request_params()


# ---------------------------------------------------------------- integers


@given(st.integers(min_value=BIGINT_MIN, max_value=BIGINT_MAX))
def test_every_bigint_round_trips_as_a_number_and_as_ascii_text(number):
    assert parse_int(number) == number
    assert parse_int(str(number)) == number


@given(st.integers(min_value=BIGINT_MAX + 1, max_value=10 ** 40) | st.integers(min_value=-(10 ** 40), max_value=BIGINT_MIN - 1))
def test_no_integer_past_bigint_is_ever_accepted(number):
    assert parse_int(number) is None
    assert parse_int(str(number)) is None


@given(st.text())
def test_parse_int_accepts_only_ascii_digits_and_never_raises(text):
    number = parse_int(text)
    if number is not None:
        digits = text.strip().removeprefix("-")
        assert digits and set(digits) <= set("0123456789") and number == int(text.strip())


@given(st.sampled_from("²³¹١٢٣٤۵߁१০੧૧୧௧౧೧൧๑໑༡၁႑០᠑᥇᧑᪁᭑᮱᱁᱑꘡꣑꤁꧑꩑꯱０１"), st.integers(0, 5))
def test_unicode_digits_are_never_numbers(digit, padding):
    assert parse_int("1" * padding + digit) is None


@given(st.one_of(st.none(), st.booleans(), st.floats(), st.lists(st.integers()), st.dictionaries(st.text(), st.text())))
def test_values_that_are_not_integers_are_none(value):
    assert parse_int(value) is None


@given(st.integers(min_value=0, max_value=10 ** 30))
def test_int_routes_match_exactly_the_ids_a_bigint_can_hold(number):
    response = bare_app.test_client().get(f"/things/{number}")
    assert response.status_code == (200 if number <= BIGINT_MAX else 404)


# Without whitespace and "/?#%": the test client trims the first and splits the URL on the others.
url_text = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), exclude_characters="/?#%"),
                   min_size=1, max_size=5)


@given(url_text.filter(lambda t: not (t.isascii() and t.isdigit())))
def test_int_routes_never_match_anything_but_ascii_digits(text):
    assert bare_app.test_client().get(f"/things/{text}").status_code == 404


def test_int_routes_refuse_a_trailing_newline():
    converter = BoundedIntConverter(bare_app.url_map)
    with pytest.raises(ValidationError):
        converter.to_python("7\n")


# ---------------------------------------------------------------- the structure


@given(json_values)
def test_the_layer_refuses_exactly_the_values_that_hold_nul_or_a_lone_surrogate(value):
    if contains_unstorable(value):
        with pytest.raises(GatewayError) as refused:
            refuse_unstorable_text(value)
        assert refused.value.code == "InvalidCharacters" and refused.value.status == 400
    else:
        refuse_unstorable_text(value)


@given(st.dictionaries(any_text, json_values, max_size=4))
def test_request_params_returns_the_object_or_a_400_with_a_code(document):
    body = json.dumps(document).encode()
    try:
        params = params_of(body)
    except GatewayError as refused:
        assert refused.status == 400 and refused.code in ("InvalidCharacters", "JSONTooDeep")
        assert contains_unstorable(document) or true_depth(document) > MAX_JSON_DEPTH
    else:
        assert params == document and not contains_unstorable(params)


@given(json_values)
def test_json_depth_counts_nesting_without_parsing(value):
    measured, expected = json_depth(json.dumps(value).encode()), true_depth(value)
    if expected <= MAX_JSON_DEPTH:
        assert measured == expected
    else:
        assert measured > MAX_JSON_DEPTH


@settings(max_examples=30)
@given(st.integers(min_value=MAX_JSON_DEPTH + 1, max_value=100_000), st.sampled_from(["[", '{"a":']))
def test_any_nesting_past_the_limit_is_refused_without_recursion(depth, opener):
    closer = "]" if opener == "[" else "}"
    body = ('{"x":' + opener * depth + "1" * (opener != "[") + closer * depth + "}").encode()
    with pytest.raises(GatewayError) as refused:
        params_of(body)
    assert refused.value.code == "JSONTooDeep"


@given(st.text(max_size=50))
def test_any_text_in_postals_params_form_field_is_a_dict_or_a_400(text):
    try:
        params = params_of({"params": text}, "application/x-www-form-urlencoded")
    except GatewayError as refused:
        assert refused.status == 400
    else:
        assert isinstance(params, dict)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_a_json_body_are_a_dict_or_a_400(body):
    try:
        params = params_of(body)
    except GatewayError as refused:
        assert refused.status == 400
    else:
        assert isinstance(params, dict) and not contains_unstorable(params)
