"""The OpenAPI 3.1 description of the MailGoat API, served at /api/v1/openapi.json.

A test checks that every /api/v1 route the app registers is described here, so this file cannot
silently fall behind the code. The routes declared in schemas.py (`DECLARED`) take their request
schemas (and, for the send routes, their response data) from the same pydantic models that
validate them; docs/api.md lists which routes are declared and which are still described here.
"""
from __future__ import annotations

from ..version import VERSION
from .schemas import component_schemas, query_parameters, request_schema, response_schema

POSTAL_METHODS = ("get", "post", "patch", "put")


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _envelope(data_schema: dict) -> dict:
    return {"allOf": [_ref("Envelope"), {"type": "object", "properties": {"data": data_schema}}]}


def _json_response(description: str, data_schema: dict, status: str = "200") -> dict:
    return {status: {"description": description, "content": {"application/json": {"schema": _envelope(data_schema)}}}}


ERRORS = {
    "400": {"$ref": "#/components/responses/BadRequest"},
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "422": {"$ref": "#/components/responses/Invalid"},
}


def _operation(summary: str, responses: dict, body: dict | None = None, parameters: list | None = None,
               security: bool = True, tag: str = "messages", form_body: dict | None = None) -> dict:
    """`form_body`: the schema of the form encodings, when a route declares one (any object otherwise)."""
    operation = {"summary": summary, "tags": [tag], "responses": {**responses, **ERRORS}}
    if body is not None:
        form = form_body or {"type": "object"}
        operation["requestBody"] = {"content": {
            "application/json": {"schema": body},
            "application/x-www-form-urlencoded": {"schema": form},
            "multipart/form-data": {"schema": form},
        }}
    if parameters:
        operation["parameters"] = parameters
    if not security:
        operation["security"] = []
    return operation


def _query(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _path_param(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _send_operation(summary: str, path: str) -> dict:
    accepted = {"description": "Accepted and queued", "content": {"application/json": {"schema": {"allOf": [
        _ref("Envelope"), {"type": "object", "required": ["message_id"], "properties": {
            "data": response_schema(path), "message_id": {"type": "string"}}}]}}}}
    return _operation(summary, {
        "200": accepted,
        "409": {"$ref": "#/components/responses/IdempotencyKeyMismatch"},
        "413": {"$ref": "#/components/responses/TooLarge"},
        "429": {"$ref": "#/components/responses/RateLimited"},
        "503": {"$ref": "#/components/responses/Unavailable"},
    }, body=request_schema(path), form_body=request_schema(path))


def document() -> dict:
    send = _send_operation("Send a message (Postal's send/message)", "/api/v1/send/message")
    alias = _send_operation("Send a message (alias used by the 1.0.0b1 Python SDK)", "/api/v1/messages/send")
    raw = _send_operation("Send a raw RFC 2822 message (Postal's send/raw)", "/api/v1/send/raw")
    paths = {
        "/api/v1/send/message": {m: send for m in POSTAL_METHODS},
        "/api/v1/messages/send": {"post": alias},
        "/api/v1/send/raw": {m: raw for m in POSTAL_METHODS},
        "/api/v1/messages": {"get": _operation("List messages, newest first", _json_response("A page", {
            "type": "object", "properties": {"messages": {"type": "array", "items": _ref("Message")},
                                             "next_cursor": {"type": ["string", "null"]}}}),
            parameters=query_parameters("/api/v1/messages"))},
        "/api/v1/messages/{identifier}": {"get": {
            **_operation("A message, flat (Python SDK)", {"200": {"description": "The message",
                         "content": {"application/json": {"schema": _ref("Message")}}},
                         "404": {"$ref": "#/components/responses/NotFound"}},
                         parameters=[_path_param("identifier")])}},
        "/api/v1/messages/message": {m: _operation(
            "Postal's message lookup with _expansions (by our id, Postal's numeric id or a token)",
            {**_json_response("The message", {"type": "object"}), "404": {"$ref": "#/components/responses/NotFound"},
             "503": {"$ref": "#/components/responses/Upstream"}}, body=request_schema("/api/v1/messages/message"))
            for m in POSTAL_METHODS},
        "/api/v1/messages/deliveries": {m: _operation(
            "Postal's delivery attempts for a message", {**_json_response("Deliveries", {
                "type": ["array", "object"], "description": "The attempts; Postal's {code, message} for an id "
                                                            "no message can have (a reachability probe)"}),
                                                         "404": {"$ref": "#/components/responses/NotFound"}},
            body=request_schema("/api/v1/messages/deliveries")) for m in POSTAL_METHODS},
        "/api/v1/messages/delete": {"post": _operation(
            "Cancel a queued, scheduled or retrying message",
            {**_json_response("Cancelled", {"type": "object", "properties": {
                "success": {"type": "boolean"}, "message_id": {"type": "string"}}}),
             "404": {"$ref": "#/components/responses/NotFound"},
             "409": {"$ref": "#/components/responses/Conflict"}}, body=request_schema("/api/v1/messages/delete"))},
        "/api/v1/credentials": {
            "post": _operation("Create an API key (shown once)", _json_response("Created", _ref("CredentialWithKey"), "201"),
                               body=request_schema("/api/v1/credentials"), tag="credentials"),
            "get": _operation("List API keys (active ones unless include_revoked=true)",
                              _json_response("Keys", {"type": "array", "items": _ref("Credential")}),
                              parameters=[_query("include_revoked", "true to list revoked keys too",
                                                 {"type": "boolean"})], tag="credentials"),
        },
        "/api/v1/credentials/{key_id}": {"delete": _operation(
            "Revoke an API key", {**_json_response("Revoked", _ref("Credential")),
                                  "404": {"$ref": "#/components/responses/NotFound"}},
            parameters=[_path_param("key_id")], tag="credentials")},
        "/api/v1/webhooks": {
            "post": _operation("Subscribe a URL to events (the signing secret is shown once)",
                               _json_response("Created", _ref("Webhook"), "201"),
                               body=request_schema("/api/v1/webhooks"), tag="webhooks"),
            "get": _operation("List this key's webhooks", _json_response("Webhooks", {"type": "array",
                                                                                     "items": _ref("Webhook")}),
                              tag="webhooks"),
        },
        "/api/v1/webhooks/{hook_id}": {"delete": _operation(
            "Delete a webhook", {**_json_response("Deleted", {"type": "object"}),
                                 "404": {"$ref": "#/components/responses/NotFound"}},
            parameters=[_path_param("hook_id", {"type": "integer"})], tag="webhooks")},
        "/api/v1/webhooks/test": {"post": _operation(
            "Send a signed webhook.test event now", _json_response("Result", {"type": "object"}),
            body=request_schema("/api/v1/webhooks/test"), tag="webhooks")},
        "/api/v1/deployments": {
            "post": _operation("Record a deploy or migration: start it, or finish one by id (admin)",
                               _json_response("Deployment", {"type": "object"}, "201"), body={
                                   "type": "object", "properties": {
                                       "id": {"type": "integer"}, "kind": {"enum": ["deploy", "migration"]},
                                       "status": {"enum": ["started", "succeeded", "failed"]},
                                       "version": {"type": "string"}, "commit": {"type": "string"},
                                       "detail": {"type": "string"}}}, tag="alerting"),
            "get": _operation("The 50 newest deployments (admin)", _json_response("Deployments", {"type": "array"}),
                              tag="alerting")},
        "/api/v1/silences": {
            "post": _operation("Silence alerts matching labels for a while (operator)",
                               _json_response("Silence", {"type": "object"}, "201"), body={
                                   "type": "object", "required": ["comment"], "properties": {
                                       "matchers": {"type": "object", "additionalProperties": {"type": "string"}},
                                       "starts_at": {"type": "string", "format": "date-time"},
                                       "ends_at": {"type": "string", "format": "date-time"},
                                       "duration": {"type": "string", "examples": ["2h"]},
                                       "author": {"type": "string"}, "comment": {"type": "string"},
                                       "kind": {"enum": ["silence", "maintenance"]}}}, tag="alerting"),
            "get": _operation("Silences, newest first", _json_response("Silences", {"type": "array"}), tag="alerting")},
        "/api/v1/silences/{silence_id}": {"delete": _operation(
            "Expire a silence now (operator)", {**_json_response("Expired", {"type": "object"}),
                                                "404": {"$ref": "#/components/responses/NotFound"}},
            parameters=[_path_param("silence_id", {"type": "integer"})], tag="alerting")},
        "/api/v1/alerts": {"get": _operation("Every alert rule with its state", _json_response(
            "Alerts", {"type": "array"}), tag="alerting")},
        "/api/v1/alerts/history": {"get": _operation("The newest alert state changes", _json_response(
            "History", {"type": "array"}), tag="alerting")},
        "/api/v1/incidents": {"post": _operation(
            "Open an incident (operator): name, status, body, impact, affected components' statuses",
            _json_response("Incident", {"type": "object"}, "201"), body={
                "type": "object", "required": ["name", "body"], "properties": {
                    "name": {"type": "string", "maxLength": 200},
                    "status": {"enum": ["investigating", "identified", "monitoring", "resolved"]},
                    "body": {"type": "string", "maxLength": 10000},
                    "impact": {"enum": ["none", "minor", "major", "critical"]},
                    "components": {"type": "object", "additionalProperties": {"enum": [
                        "operational", "degraded_performance", "partial_outage", "major_outage",
                        "under_maintenance"]}}}}, tag="status")},
        "/api/v1/incidents/{incident_id}/updates": {"post": _operation(
            "Add an update: a status no earlier than the current one, a body, components' new statuses",
            {**_json_response("Incident", {"type": "object"}), "404": {"$ref": "#/components/responses/NotFound"}},
            body={"type": "object", "required": ["status", "body"], "properties": {
                "status": {"type": "string"}, "body": {"type": "string"}, "components": {"type": "object"}}},
            parameters=[_path_param("incident_id", {"type": "integer"})], tag="status")},
        "/api/v1/incidents/{incident_id}/postmortem": {"put": _operation(
            "Set the postmortem", {**_json_response("Incident", {"type": "object"}),
                                   "404": {"$ref": "#/components/responses/NotFound"}},
            body={"type": "object", "required": ["body"], "properties": {"body": {"type": "string"}}},
            parameters=[_path_param("incident_id", {"type": "integer"})], tag="status")},
        "/api/v1/maintenances": {"post": _operation(
            "Schedule maintenance (operator): its components show under_maintenance and their alerts are silenced",
            _json_response("Maintenance", {"type": "object"}, "201"), body={
                "type": "object", "required": ["name", "body", "components", "scheduled_for", "scheduled_until"],
                "properties": {"name": {"type": "string"}, "body": {"type": "string"},
                               "components": {"type": "array", "items": {"type": "string"}},
                               "scheduled_for": {"type": "string", "format": "date-time"},
                               "scheduled_until": {"type": "string", "format": "date-time"}}}, tag="status")},
        "/api/v1/maintenances/{maintenance_id}": {"delete": _operation(
            "Cancel a maintenance window", {**_json_response("Maintenance", {"type": "object"}),
                                            "404": {"$ref": "#/components/responses/NotFound"}},
            parameters=[_path_param("maintenance_id", {"type": "integer"})], tag="status")},
        "/api/v1/subscribers": {
            "get": _operation("Status subscribers (operator): email and webhook, with their state",
                              _json_response("Subscribers", {"type": "array"}), tag="status"),
            "post": _operation(
                "Add a webhook subscriber ({url, secret?}; the secret is shown once) or start an email "
                "double opt-in ({email})", {**_json_response("Webhook subscriber", {"type": "object"}, "201"),
                                            **_json_response("Email confirmation queued", {"type": "object"}, "202"),
                                            "409": {"$ref": "#/components/responses/Conflict"}},
                body={"type": "object", "properties": {"url": {"type": "string", "format": "uri"},
                                                       "secret": {"type": "string", "minLength": 16, "maxLength": 128},
                                                       "email": {"type": "string", "format": "email"}}},
                tag="status")},
        "/api/v1/subscribers/{subscriber_id}": {"delete": _operation(
            "Remove a subscriber (what was queued for it is dropped)",
            {**_json_response("Removed", {"type": "object"}), "404": {"$ref": "#/components/responses/NotFound"}},
            parameters=[_path_param("subscriber_id", {"type": "integer"})], tag="status")},
        "/api/v1/events": {"get": {
            **_operation("Server-Sent Events of this key's events (resume with Last-Event-ID)",
                         {"200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                          # EventStreamsFull or TooManyEventStreams (EVENTS_STREAMS_MAX, EVENTS_STREAMS_PER_KEY)
                          "503": {"$ref": "#/components/responses/Unavailable"}},
                         parameters=query_parameters("/api/v1/events"),
                         tag="events")}},
        "/api/v1/usage": {"get": _operation("Messages per key per UTC day by outcome", _json_response("Usage", {
            "type": "object"}), parameters=query_parameters("/api/v1/usage"), tag="usage")},
        "/api/v1/inbound": {"get": _operation("Inbound mail, newest first", _json_response("Inbound", {
            "type": "array"}), tag="inbound")},
        "/api/v1/inbound/{inbound_id}": {"get": _operation(
            "One inbound message", {**_json_response("Inbound message", {"type": "object"}),
                                    "404": {"$ref": "#/components/responses/NotFound"}},
            parameters=[_path_param("inbound_id", {"type": "integer"})], tag="inbound")},
        "/api/v1/auth/login": {"post": _operation(
            "Sign in; returns a JWT for Authorization: Bearer", {
                **_json_response("Signed in", {"type": "object", "properties": {
                    "token": {"type": "string"}, "expires_at": {"type": "integer"}, "user": {"type": "object"}}}),
                "429": {"$ref": "#/components/responses/RateLimited"}},
            body=request_schema("/api/v1/auth/login"), security=False, tag="auth")},
        "/api/v1/openapi.json": {"get": _operation("This document", {"200": {"description": "OpenAPI 3.1"}},
                                                   security=False, tag="meta")},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "MailGoat API", "version": VERSION,
                 "description": "Postal-compatible sending with keys, limits, durable delivery and events."},
        "servers": [{"url": "/"}],
        "security": [{"ServerApiKey": []}, {"Bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ServerApiKey": {"type": "apiKey", "in": "header", "name": "X-Server-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer", "description": "An API key, or a user's JWT"},
            },
            "schemas": _schemas(),
            "responses": {name: {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}
                          for name, text in (("BadRequest", "Malformed request"), ("Unauthorized", "No or bad credentials"),
                                             ("Forbidden", "Wrong scope, role or client address"),
                                             ("Invalid", "Validation failed (Postal's codes)"),
                                             ("NotFound", "No such object"), ("Conflict", "Not in a state for this"),
                                             ("TooLarge", "Body or attachment too large"),
                                             ("RateLimited", "Rate limit or quota reached; see Retry-After"),
                                             ("IdempotencyKeyMismatch",
                                              "The idempotency key was used for a different message"),
                                             ("Unavailable", "The database is unavailable; see Retry-After"),
                                             ("Upstream", "Postal is unavailable"))},
        },
    }


def _schemas() -> dict:
    return {
        **component_schemas(),
        "Envelope": {"type": "object", "required": ["status", "time", "flags", "data"], "properties": {
            "status": {"enum": ["success", "error", "parameter-error"]}, "time": {"type": "number"},
            "flags": {"type": "object"}, "data": {}}},
        "Error": {"allOf": [{"$ref": "#/components/schemas/Envelope"}, {"type": "object", "properties": {
            "data": {"type": "object", "required": ["code", "message"],
                     "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
            "error": {"type": "string"}, "message": {"type": "string"}}}]},
        "Message": {"type": "object", "properties": {
            "id": {"type": "string"}, "message_id": {"type": "string"}, "to": {"type": "array"},
            "from": {"type": "string"}, "subject": {"type": ["string", "null"]}, "plain_body": {},
            "body": {}, "status": {"type": "string"}, "recipients": {"type": "array"}}},
        "Credential": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "prefix": {"type": "string"},
            "scopes": {"type": "array"}, "created_at": {"type": "string"}, "last_used_at": {},
            "revoked_at": {}, "revoked": {"type": "boolean"}, "status": {"enum": ["active", "revoked"]}}},
        "CredentialWithKey": {"allOf": [{"$ref": "#/components/schemas/Credential"},
                                        {"type": "object", "properties": {"key": {"type": "string"}}}]},
        "Webhook": {"type": "object", "properties": {
            "id": {"type": "string"}, "url": {"type": "string"}, "name": {"type": "string"},
            "events": {"type": "array"}, "enabled": {"type": "boolean"}, "created_at": {"type": "string"},
            "last_used_at": {}}},
    }
