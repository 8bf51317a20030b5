"""Request declarations: one pydantic model per route, from which both the checks and the
OpenAPI document are generated, so the spec and the validation cannot drift apart.

`DECLARED` is the registry of request bodies: OpenAPI path -> (request model, response data model
or None while the answer is still described by hand); `DECLARED_QUERY` the registry of GET routes'
query parameters. `parse(model, params)` validates the parameters that `request_params()` read
(or the query string) and raises the first problem as a GatewayError (Postal reports only the
first error too). `component_schemas()`, `request_schema(path)`, `response_schema(path)` and
`query_parameters(path)` give openapi.py what to publish. A route adopts the mechanism by
declaring its models here, adding its path to a registry and calling
`declared_params(request_params())` or `declared_query()` (docs/api.md lists the routes that do).

The models check shapes, types, lengths and characters only. Postal's own checks, with its codes
and in its order (NoRecipients ... AttachmentMissingData), run afterwards in sending.py, which is
why the fields those codes are about are optional here.

Error codes: a custom error's type is the gateway code it answers with (`InvalidAddress`,
`InvalidSendAt`, ...); pydantic's own errors (a wrong JSON type, a value too long) answer
`ParameterError` with the envelope status `parameter-error`, as Postal does for parameters. A
field annotated with `Code(code, message, status)` answers that code for any problem, a missing
value included: how the routes declared after the sends keep the codes their clients know.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from email.utils import parseaddr
from typing import Annotated, Any, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from flask import request
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, GetCoreSchemaHandler,
                      PlainValidator, StrictInt, StrictStr, StringConstraints, ValidationError, WithJsonSchema)
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError, core_schema

from ..events.models import EVENT_TYPES
from .envelope import GatewayError
from .models import MESSAGE_STATES, SCOPES
from .params import BIGINT_MAX, INTEGER_MAX, parse_int

REF_TEMPLATE = "#/components/schemas/{model}"

MAX_ADDRESSES = 50  # Postal's limit for each of to, cc and bcc
# The columns these values are stored in (gateway/models.py), so PostgreSQL never refuses them.
ADDRESS_MAX_LENGTH = 320  # messages.from_address, message_recipients.address
TAG_MAX_LENGTH = 255  # messages.tag
KEY_NAME_MAX_LENGTH = 120  # api_keys.name
DEFAULT_SENDER_MAX_LENGTH = 255  # api_keys.default_sender
WEBHOOK_NAME_MAX_LENGTH = 120  # webhooks.name
WEBHOOK_URL_MAX_LENGTH = 2048  # webhooks.url
TEST_SECRET_MAX_LENGTH = 128
USER_EMAIL_MAX_LENGTH = 320  # users.email
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 100
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


@dataclass(frozen=True)
class Code:
    """Annotated metadata: every problem with the field, a missing value included, answers `code`
    with `message` (the error a route's hand-written check gave before it was declared here)."""

    code: str
    message: str
    status: int | None = None  # None: the code's usual status (422 for a validation error)

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(self._validate, handler(source))

    def _validate(self, value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(self.code, self.message, {"status": self.status}) from None


def _comma_list(value):
    """A list, or a comma-separated string (forms and the CLIs), blanks dropped."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _query_integer(value):
    """A query value of ASCII digits within BIGINT as an int; anything else is left to fail the type."""
    number = parse_int(value)
    return value if number is None else number


def _page_size(value: int) -> int:
    # Clients ask for more or fewer than a page holds; they get the nearest size, not an error.
    return min(max(value, 1), MAX_PAGE_SIZE)


def _iso_day(value):
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("InvalidDate", "dates are YYYY-MM-DD")


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


class RateLimits(_Declared):
    """Per-key limits; each an Integer column (1 .. 2^31-1)."""

    burst: Annotated[StrictInt, Field(ge=1, le=INTEGER_MAX)] | None = None
    hour: Annotated[StrictInt, Field(ge=1, le=INTEGER_MAX)] | None = None
    today: Annotated[StrictInt, Field(ge=1, le=INTEGER_MAX)] | None = None


_LIMITS = Code("InvalidLimits", f"must be a whole number from 1 to {INTEGER_MAX} "
                                "(rate_limits: an object with burst, hour and/or today)")


class NewCredential(_Declared):
    """POST /api/v1/credentials. The scopes, networks and domains are checked again by create_key,
    which the CLI calls too."""

    name: Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1,
                                                 max_length=KEY_NAME_MAX_LENGTH),
                    Code("InvalidName", f"is required (at most {KEY_NAME_MAX_LENGTH} characters)")]
    scopes: Annotated[list[Literal[SCOPES]], BeforeValidator(_comma_list), Field(min_length=1),
                      Code("InvalidScopes", f"must be a non-empty list drawn from {', '.join(SCOPES)}")] = ["send"]
    allowed_from_domains: Annotated[list[StrictStr] | None, BeforeValidator(_comma_list),
                                    Code("InvalidFromDomains",
                                         "must be domain names such as example.com")] = None
    # It becomes the From header of the key's sends, so it is an address like any other.
    default_sender: Annotated[Annotated[Address, StringConstraints(max_length=DEFAULT_SENDER_MAX_LENGTH)] | None,
                              BeforeValidator(_blank_is_none),
                              Code("InvalidDefaultSender", "must be an email address")] = None
    allowed_ips: Annotated[list[StrictStr] | None, BeforeValidator(_comma_list),
                           Code("InvalidAllowedIps", "must be CIDR networks such as 10.0.0.0/8")] = None
    rate_limits: Annotated[RateLimits | None, _LIMITS] = None
    monthly_quota: Annotated[Annotated[StrictInt, Field(ge=1, le=INTEGER_MAX)] | None, _LIMITS] = None


EventType = Literal[("*",) + EVENT_TYPES]
WebhookUrl = Annotated[StrictStr, StringConstraints(max_length=WEBHOOK_URL_MAX_LENGTH),
                       Code("InvalidWebhookUrl", f"must be an http(s) URL of at most {WEBHOOK_URL_MAX_LENGTH} "
                                                 "characters")]


class NewWebhook(_Declared):
    """POST /api/v1/webhooks. The URL's target (SSRF) is checked by the route, against the settings."""

    url: WebhookUrl
    name: Annotated[Annotated[StrictStr, StringConstraints(max_length=WEBHOOK_NAME_MAX_LENGTH),
                              AfterValidator(_single_line)] | None, BeforeValidator(_blank_is_none),
                    Code("InvalidName", f"must be a string of at most {WEBHOOK_NAME_MAX_LENGTH} characters")] = None
    events: Annotated[list[EventType] | None, Code(
        "InvalidEvents", f"must be a list drawn from {', '.join(EVENT_TYPES)} (or '*')")] = None


class WebhookTest(_Declared):
    """POST /api/v1/webhooks/test: `{}` tests the key's webhooks, `id` one of them, `url` any URL."""

    id: Annotated[StrictStr | StrictInt | None, Code(
        "InvalidWebhookId", 'must be a webhook id (a string such as "7")')] = None
    url: WebhookUrl | None = None
    secret: Annotated[Annotated[StrictStr, StringConstraints(max_length=TEST_SECRET_MAX_LENGTH)] | None, Code(
        "InvalidSecret", f"must be a string of at most {TEST_SECRET_MAX_LENGTH} characters")] = None


class ById(_Declared):
    """Postal's messages/message, messages/deliveries and messages/delete: a message by id."""

    id: Annotated[Annotated[StrictStr, StringConstraints(min_length=1)] | StrictInt,
                  Code("ParameterError", "is required: a string or an integer")]
    expansions: Annotated[bool | StrictStr | list[StrictStr] | None, Code(
        "ParameterError", "must be true, or the names as an array or a comma-separated string")] = Field(
        None, alias="_expansions", description="true for all, or the names (an array or comma-separated)")


_LOGIN = Code("ParameterError", "is required: email and password are both strings")


class Login(_Declared):
    """POST /api/v1/auth/login."""

    email: Annotated[StrictStr, StringConstraints(max_length=USER_EMAIL_MAX_LENGTH), _LOGIN]
    password: Annotated[StrictStr, _LOGIN]


# -- query parameters (GET routes) ------------------------------------------------------------------

def query_int(minimum: int, maximum: int = BIGINT_MAX):
    """A query parameter holding a whole number from `minimum` to `maximum`."""
    return Annotated[StrictInt, Field(ge=minimum, le=maximum), BeforeValidator(_query_integer)]


Day = Annotated[date | None, PlainValidator(_iso_day),
                WithJsonSchema({"type": "string", "format": "date"})]


class MessageFilters(_Declared):
    """GET /api/v1/messages."""

    state: Annotated[list[Literal[MESSAGE_STATES]], BeforeValidator(_comma_list),
                     Code("InvalidState", f"must be states drawn from {', '.join(MESSAGE_STATES)}", 400),
                     WithJsonSchema({"type": "string"})] = Field(
        [], description=f"Comma-separated states: {', '.join(MESSAGE_STATES)}")
    recipient: Annotated[StrictStr, StringConstraints(strip_whitespace=True, max_length=ADDRESS_MAX_LENGTH)] | None = \
        Field(None, description="An exact recipient address")
    tag: Tag | None = Field(None, description="Tag")
    since: SendAt = Field(None, description="ISO-8601 or epoch seconds")
    until: SendAt = Field(None, description="ISO-8601 or epoch seconds")
    limit: Annotated[StrictInt, BeforeValidator(_query_integer), AfterValidator(_page_size), Code(
        "InvalidLimit", f"must be a number from 1 to {MAX_PAGE_SIZE}", 400)] = Field(
        DEFAULT_PAGE_SIZE, description=f"1..{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}); others are clamped")
    cursor: StrictStr | None = Field(None, description="From next_cursor")


class UsageQuery(_Declared):
    """GET /api/v1/usage."""

    from_: Annotated[Day, Code("InvalidDate", "dates are YYYY-MM-DD", 400)] = Field(
        None, alias="from", description="YYYY-MM-DD (default 29 days before to)")
    to: Annotated[Day, Code("InvalidDate", "dates are YYYY-MM-DD", 400)] = Field(
        None, description="YYYY-MM-DD (default today)")
    key_id: Annotated[query_int(1) | None, BeforeValidator(_blank_is_none), Code(
        "InvalidKeyId", f"must be a whole number from 1 to {BIGINT_MAX}", 400)] = Field(
        None, description="One key's usage (readers and admins only)")


class EventsQuery(_Declared):
    """GET /api/v1/events: where the stream resumes (the Last-Event-ID header, when sent, wins)."""

    last_event_id: Annotated[query_int(0) | None, BeforeValidator(_blank_is_none), Code(
        "InvalidLastEventId", f"must be a whole number from 0 to {BIGINT_MAX}", 400)] = Field(
        None, description="Resume after this event id (or the Last-Event-ID header); ASCII digits")


# The registry: which routes are declared here, by OpenAPI path, with what they take and answer.
# A response model of None: the answer's `data` is still described by hand in openapi.py.
DECLARED: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
    "/api/v1/send/message": (SendMessage, SendResult),
    "/api/v1/messages/send": (SendMessage, SendResult),
    "/api/v1/send/raw": (SendRaw, SendResult),
    "/api/v1/credentials": (NewCredential, None),
    "/api/v1/webhooks": (NewWebhook, None),
    "/api/v1/webhooks/test": (WebhookTest, None),
    "/api/v1/messages/message": (ById, None),
    "/api/v1/messages/deliveries": (ById, None),
    "/api/v1/messages/delete": (ById, None),
    "/api/v1/auth/login": (Login, None),
}


# GET routes' query parameters, by OpenAPI path.
DECLARED_QUERY: dict[str, type[BaseModel]] = {
    "/api/v1/messages": MessageFilters,
    "/api/v1/usage": UsageQuery,
    "/api/v1/events": EventsQuery,
}


def declared_params(params: dict) -> Any:
    """`params` validated by the model declared for the route serving this request."""
    return parse(DECLARED[request.url_rule.rule][0], params)


def declared_query(args: dict | None = None) -> Any:
    """The query string (or `args`, when a header stands in for a parameter) validated by the
    model declared for the route serving this request."""
    return parse(DECLARED_QUERY[request.url_rule.rule], request.args.to_dict() if args is None else args)


def parse(model: type[BaseModel], params: dict) -> Any:
    """`params` validated as `model`, or the first problem as a GatewayError (422)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise _first_error(exc.errors(include_url=False), model) from None


def _first_error(errors: list, model: type[BaseModel]) -> GatewayError:
    error = _coded_if_missing(errors[0], model)
    where = _location(error["loc"])
    message = f"`{where}` {_explain(error)}" if where else _explain(error)
    if error["type"][:1].isupper() and error["type"] != "ParameterError":
        return GatewayError(error["type"], message, (error.get("ctx") or {}).get("status") or 422)
    return GatewayError("ParameterError", message, 422, envelope_status="parameter-error")


def _coded_if_missing(error: dict, model: type[BaseModel]) -> dict:
    # A missing field runs no validator, so its Code (the declared fields that are required have
    # no alias) is applied here.
    if error["type"] != "missing" or len(error["loc"]) != 1 or error["loc"][0] not in model.model_fields:
        return error
    code = next((item for item in model.model_fields[error["loc"][0]].metadata if isinstance(item, Code)), None)
    return {**error, "type": code.code, "msg": code.message, "ctx": {"status": code.status}} if code else error


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
    models = sorted({model for pair in DECLARED.values() for model in pair if model}, key=lambda m: m.__name__)
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=REF_TEMPLATE)
    return top.get("$defs", {})


def query_parameters(path: str) -> list[dict]:
    """The OpenAPI `parameters` of a GET route, one per field of its declared query model."""
    schema = DECLARED_QUERY[path].model_json_schema(ref_template=REF_TEMPLATE)
    return [{"name": name, "in": "query", "required": name in schema.get("required", ()),
             "description": field.pop("description", ""), "schema": _without_null(field)}
            for name, field in schema["properties"].items()]


def _without_null(schema: dict) -> dict:
    # An absent query parameter is the null; the query string cannot carry one.
    union = "anyOf" if "anyOf" in schema else "oneOf" if "oneOf" in schema else None
    rest = {key: value for key, value in schema.items() if key not in (union, "title", "default")}
    if union is None:
        return rest
    branches = [branch for branch in schema[union] if branch != {"type": "null"}]
    return {**rest, **branches[0]} if len(branches) == 1 else {**rest, union: branches}


def request_schema(path: str) -> dict:
    return {"$ref": REF_TEMPLATE.format(model=DECLARED[path][0].__name__)}


def response_schema(path: str) -> dict:
    return {"$ref": REF_TEMPLATE.format(model=DECLARED[path][1].__name__)}
