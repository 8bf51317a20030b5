"""Request parameters the way Postal reads them, plus the encodings MailGoat clients send, and the
checks every route's input passes before any route code sees it.

JSON when the content type says so; otherwise a form field `params` holding JSON (Postal);
otherwise plain form fields and multipart file parts (the Python SDK), with repeated fields
such as `to` gathered into lists.

Whatever the encoding, the parameters are refused with a 400 and a code when they are nested
deeper than MAX_JSON_DEPTH (checked before parsing, so deep JSON cannot exhaust the stack) or hold
a NUL byte or a lone surrogate anywhere, in a key or a value: PostgreSQL cannot store the first,
and nothing can encode the second into mail. Integers from requests go through `parse_int` /
`require_int`: ASCII digits only, within PostgreSQL's BIGINT.
"""
from __future__ import annotations

import base64
import json
import re
from itertools import accumulate

from flask import request
from werkzeug.routing import IntegerConverter, ValidationError

from .envelope import GatewayError

LIST_FIELDS = ("to", "cc", "bcc", "rcpt_to", "scopes", "allowed_from_domains", "allowed_ips")

MAX_JSON_DEPTH = 32
BIGINT_MIN, BIGINT_MAX = -(2 ** 63), 2 ** 63 - 1
INTEGER_MAX = 2 ** 31 - 1  # an Integer column (PostgreSQL's int4)

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ASCII_INTEGER = re.compile(r"-?[0-9]+")
# A JSON string literal, written so the regex engine walks long strings without backtracking.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_STEP = [{ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}.get(byte, 0) for byte in range(256)]


def request_params() -> dict:
    content_type = request.content_type or ""
    if content_type.startswith("application/json"):
        if not request.get_data():
            return {}
        params = parse_json(request.get_data(), "The request body")
    elif "params" in request.form:
        params = parse_json(request.form["params"], "The params field")
    elif request.form or request.files:
        params = _form_params()
    else:
        params = {}
    if not isinstance(params, dict):
        raise GatewayError("InvalidJSON", "Parameters must be a JSON object.", 400)
    refuse_unstorable_text(params)
    return params


def parse_json(document: bytes | str, what: str):
    """`document` parsed, refusing deep nesting up front and NaN/Infinity (not JSON, and not storable)."""
    raw = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise GatewayError("JSONTooDeep", f"{what} is nested deeper than {MAX_JSON_DEPTH} levels.", 400)
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except ValueError:
        raise GatewayError("InvalidJSON", f"{what} is not valid JSON.", 400) from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw`, counted without parsing (no recursion).

    Strings are blanked first (brackets inside them do not nest); the running sum of +1/-1 over
    the brackets that remain is the depth. Every step runs in C: a few ms per megabyte.
    """
    brackets = _JSON_STRING.sub(b'""', raw).translate(None, _NOT_A_BRACKET)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def refuse_unstorable_text(params) -> None:
    """Raise InvalidCharacters naming the first key or value holding a NUL byte or a lone surrogate."""
    pending = [("", params)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise GatewayError("InvalidCharacters",
                                   f"{where or 'A parameter'} contains a NUL byte or a lone surrogate.", 400)
        elif isinstance(item, dict):
            for name, value in item.items():
                inside = f"{where}.{name}" if where else str(name)
                pending.append(("A parameter name", name))
                pending.append((inside, value))
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", value) for index, value in enumerate(item))


def parse_int(value) -> int | None:
    """`value` as a BIGINT when it is a JSON integer or a string of ASCII digits, else None.

    `str.isdigit()` is not enough: "³" passes it and breaks `int()`, and "١٢" becomes 12.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _ASCII_INTEGER.fullmatch(text) or len(text) > 20:
            return None
        value = int(text)
    if not isinstance(value, int) or not BIGINT_MIN <= value <= BIGINT_MAX:
        return None
    return value


def require_int(value, field: str, code: str, *, minimum: int = BIGINT_MIN, maximum: int = BIGINT_MAX,
                status: int = 400) -> int:
    """`value` as an integer from `minimum` to `maximum`, or a GatewayError(code) naming `field`."""
    number = parse_int(value)
    if number is None or not minimum <= number <= maximum:
        raise GatewayError(code, f"{field} must be a whole number from {minimum} to {maximum}", status)
    return number


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` route parts: ASCII digits within BIGINT, so an id past 64 bits is a 404, not a
    database overflow."""

    regex = r"[0-9]+"

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = BIGINT_MAX,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)

    def to_python(self, value: str) -> int:
        # The routing regex lets a trailing newline through ("7\n"), and int() would accept it.
        if not (value.isascii() and value.lstrip("-").isdigit()):
            raise ValidationError()
        return super().to_python(value)


def _form_params() -> dict:
    params: dict = {}
    for name in request.form:
        values = request.form.getlist(name)
        params[name] = values if name in LIST_FIELDS or len(values) > 1 else values[0]
    files = request.files.getlist("attachments") + request.files.getlist("attachments[]")
    if files:
        params["attachments"] = [
            {
                "name": f.filename,
                "content_type": f.mimetype or "application/octet-stream",
                "data": base64.b64encode(f.read()).decode(),
            }
            for f in files
        ]
    return params
