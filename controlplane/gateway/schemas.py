"""Request declarations: one pydantic model per route, from which both the checks and the
OpenAPI document are generated, so the spec and the validation cannot drift apart.

`DECLARED` is the registry: OpenAPI path -> (request model, response data model).
`parse(model, params)` validates the parameters that `request_params()` read and raises the first
problem as a GatewayError (Postal reports only the first error too). `component_schemas()`,
`request_schema(path)` and `response_schema(path)` give openapi.py what to publish. A route adopts
the mechanism by declaring its models here, adding its path to `DECLARED` and calling
`declared_params(request_params())` (docs/api.md lists the routes that do).

The models check shapes, types, lengths and characters only. Postal's own checks, with its codes
and in its order (NoRecipients ... AttachmentMissingData), run afterwards in sending.py, which is
why the fields those codes are about are optional here.

Error codes: a custom error's type is the gateway code it answers with (`InvalidAddress`,
`InvalidSendAt`, ...); pydantic's own errors (a wrong JSON type, a value too long) answer
`ParameterError` with the envelope status `parameter-error`, as Postal does for parameters.
"""
from __future__ import annotations

import functools
import re
from datetime import datetime, timezone
from email.utils import parseaddr
from typing import Annotated, Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from flask import request
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator,
                      StringConstraints, ValidationError, WithJsonSchema)
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError

from .envelope import GatewayError

REF_TEMPLATE = "#/components/schemas/{model}"

MAX_ADDRESSES = 50  # Postal's limit for each of to, cc and bcc
# The columns these values are stored in (gateway/models.py), so PostgreSQL never refuses them.
ADDRESS_MAX_LENGTH = 320  # messages.from_address, message_recipients.address
TAG_MAX_LENGTH = 255  # messages.tag
ATTACHMENT_NAME_MAX_LENGTH = 255
CONTENT_TYPE_MAX_LENGTH = 255

# RFC 5322 3.6.8: a header field name is printable US-ASCII except the colon.
_HEADER_NAME = re.compile(r"[!-9;-~]{1,998}")
_EPOCH_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
# RFC 2045 5.1: type "/" subtype, each a token, with optional parameters after a semicolon.
_CONTENT_TYPE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+(\s*;[^\r\n]*)?")


# -- checks shared by the fields ------------------------------------------------------------------

def _single_line(value: str) -> str:
    # A CR or LF in anything that becomes a header would let a client add headers of its own.
    if "\r" in value or "\n" in value:
        raise PydanticCustomError("ParameterError", "must not contain a line break (CR or LF)")
    return value


def _blank_is_none(value):
    return None if isinstance(value, str) and not value.strip() else value


@functools.lru_cache(maxsize=4096)  # the same senders and recipients come back send after send
def address_problem(address: str) -> str | None:
    """Why `address` ("user@example.com" or "Name <user@example.com>") is not a valid address, or None.

    The display name is split off with email.utils and left as the client wrote it (UTF-8 names
    such as "José <jose@example.com>" are common); the address itself is checked by
    email-validator, for syntax only: no DNS in the request path.
    """
    bare = address.strip()
    _, addr_spec = parseaddr(bare)
    display = bare[:-len(addr_spec) - 2] if bare.endswith(f"<{addr_spec}>") else None
    if not addr_spec or (bare != addr_spec and (display is None or "<" in display or ">" in display)):
        return "write it as user@example.com or Name <user@example.com>"
    try:
        validate_email(_special_use_domain_as_example(addr_spec), check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _special_use_domain_as_example(addr_spec: str) -> str:
    # email-validator refuses special-use domains (.local, .test, localhost) outright; they are
    # valid syntax, and development defaults use them (alerts@mailgoat.local).
    local, _, domain = addr_spec.rpartition("@")
    lowered = domain.lower()
    if any(lowered == name or lowered.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES):
        return f"{local}@example.com"
    return addr_spec


def _address(value: str) -> str:
    _single_line(value)
    problem = address_problem(value)
    if problem:
        raise PydanticCustomError("InvalidAddress", "{address} is not a valid email address: {problem}",
                                  {"address": repr(value[:100]), "problem": problem})
    return value


def _split_addresses(value):
    """Postal takes an array or a comma-separated string; blanks are dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise PydanticCustomError("ParameterError", "must be an array or a comma-separated string")
    return [item.strip() if isinstance(item, str) else item for item in value
            if not (isinstance(item, str) and not item.strip())]


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise PydanticCustomError("ParameterError",
                                  "header names are printable ASCII without spaces or a colon")
    return value


def _header_value(value):
    # Postal writes numbers as text; anything else is not a header value.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _content_type(value: str) -> str:
    if not _CONTENT_TYPE.fullmatch(value):
        raise PydanticCustomError("ParameterError", "must be a MIME type such as text/plain")
    return value


def parse_send_at(value) -> datetime | None:
    """ISO-8601 or epoch seconds; None for "now". Raises GatewayError InvalidSendAt."""
    try:
        return _send_time(value)
    except ValueError:
        raise GatewayError("InvalidSendAt", f"send_at must be ISO-8601 or epoch seconds, got {value!r}") from None


def _send_time(value) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    try:
        # ASCII digits only: float() also reads other scripts' digits ("١٢" is 12).
        if isinstance(value, (int, float)) or (isinstance(value, str) and _EPOCH_SECONDS.fullmatch(value)):
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (OverflowError, OSError) as exc:
        raise ValueError(str(exc)) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _send_at(value) -> datetime | None:
    try:
        return _send_time(value)
    except ValueError:
        raise PydanticCustomError("InvalidSendAt", "must be ISO-8601 or epoch seconds, got {value}",
                                  {"value": repr(value)[:100]}) from None


# -- field types ------------------------------------------------------------------------------------

OneLine = Annotated[str, AfterValidator(_single_line)]
Address = Annotated[str, StringConstraints(max_length=ADDRESS_MAX_LENGTH), AfterValidator(_address)]
OptionalAddress = Annotated[Address | None, BeforeValidator(_blank_is_none)]
Addresses = Annotated[list[Address], BeforeValidator(_split_addresses), WithJsonSchema({"oneOf": [
    {"type": "array", "maxItems": MAX_ADDRESSES, "items": {"type": "string", "maxLength": ADDRESS_MAX_LENGTH}},
    {"type": "string", "description": "Comma-separated addresses"}]})]
Tag = Annotated[str, StringConstraints(max_length=TAG_MAX_LENGTH), AfterValidator(_single_line)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, BeforeValidator(_header_value), AfterValidator(_single_line),
                        WithJsonSchema({"type": ["string", "number"]})]
SendAt = Annotated[datetime | None, PlainValidator(_send_at), WithJsonSchema({
    "oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}],
    "description": "ISO-8601 or epoch seconds; absent for now"})]


class _Declared(BaseModel):
    # Postal ignores parameters it does not know, and so do we.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Attachment(_Declared):
    """One attachment: `data` is base64. A missing name or data is Postal's error, checked later."""

    name: Annotated[str, StringConstraints(max_length=ATTACHMENT_NAME_MAX_LENGTH),
                    AfterValidator(_single_line)] | None = None
    content_type: Annotated[str, StringConstraints(max_length=CONTENT_TYPE_MAX_LENGTH),
                            AfterValidator(_content_type)] | None = None
    data: str | None = None


class SendMessage(_Declared):
    """Postal's send/message, plus `body` (the 1.0.0b1 SDK's name for plain_body) and `send_at`."""

    to: Addresses = []
    cc: Addresses = []
    bcc: Addresses = []
    from_: OptionalAddress = Field(None, alias="from")
    sender: OptionalAddress = None
    subject: OneLine | None = None
    reply_to: OptionalAddress = None
    plain_body: str | None = None
    html_body: str | None = None
    body: str | None = Field(None, description="Taken as plain_body when plain_body is absent")
    tag: Tag | None = None
    bounce: bool | None = None
    headers: dict[HeaderName, HeaderValue] | None = None
    attachments: list[Attachment] | None = None
    send_at: SendAt = None


class SendRaw(_Declared):
    """Postal's send/raw: `data` is a base64 RFC 2822 message."""

    mail_from: OptionalAddress = None
    rcpt_to: Addresses = []
    data: str | None = None
    bounce: bool | None = None
    send_at: SendAt = None


class SentTo(BaseModel):
    """One recipient's per-recipient id and token, as Postal answers them."""

    id: int
    token: str


class SendResult(BaseModel):
    """What send/message and send/raw answer under `data` (the same message_id is also top level)."""

    message_id: str
    messages: dict[str, SentTo]


# The registry: which routes are declared here, by OpenAPI path, with what they take and answer.
DECLARED: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "/api/v1/send/message": (SendMessage, SendResult),
    "/api/v1/messages/send": (SendMessage, SendResult),
    "/api/v1/send/raw": (SendRaw, SendResult),
}


def declared_params(params: dict) -> Any:
    """`params` validated by the model declared for the route serving this request."""
    return parse(DECLARED[request.url_rule.rule][0], params)


def parse(model: type[BaseModel], params: dict) -> Any:
    """`params` validated as `model`, or the first problem as a GatewayError (422)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise _first_error(exc.errors(include_url=False)) from None


def _first_error(errors: list) -> GatewayError:
    error = errors[0]
    where = _location(error["loc"])
    message = f"`{where}` {_explain(error)}" if where else _explain(error)
    if error["type"][:1].isupper() and error["type"] != "ParameterError":
        return GatewayError(error["type"], message, 422)
    return GatewayError("ParameterError", message, 422, envelope_status="parameter-error")


def _location(loc: tuple) -> str:
    where = ""
    for part in loc:
        if part == "[key]":
            where += " (its name)"
        elif isinstance(part, int):
            where += f"[{part}]"
        else:
            where += f".{part}" if where else str(part)
    return where


# pydantic's messages for the types a client meets most, in the words of Postal's own.
_EXPLAINED = {
    "string_type": "must be a string",
    "list_type": "must be an array",
    "dict_type": "must be a hash",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


def _explain(error: dict) -> str:
    if error["type"] in _EXPLAINED:
        return _EXPLAINED[error["type"]]
    if error["type"] == "string_too_long":
        return f"must be at most {error['ctx']['max_length']} characters"
    return error["msg"][0].lower() + error["msg"][1:] if error["msg"] else error["type"]


def component_schemas() -> dict:
    """Every declared model (and the models inside them) as OpenAPI components."""
    models = sorted({model for pair in DECLARED.values() for model in pair}, key=lambda m: m.__name__)
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=REF_TEMPLATE)
    return top.get("$defs", {})


def request_schema(path: str) -> dict:
    return {"$ref": REF_TEMPLATE.format(model=DECLARED[path][0].__name__)}


def response_schema(path: str) -> dict:
    return {"$ref": REF_TEMPLATE.format(model=DECLARED[path][1].__name__)}
