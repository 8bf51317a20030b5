"""The OpenAPI document describes every /api/v1 route the app serves, and its answers."""
import re

import jsonschema

from controlplane.gateway.schemas import DECLARED, DECLARED_QUERY, query_parameters


def auth(key):
    return {"X-Server-API-Key": key}


def test_every_api_route_is_described(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in described, f"{method} {path} is not in openapi.json"


def test_every_reference_resolves(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    text = str(spec)
    for ref in set(re.findall(r"#/components/(\w+)/(\w+)", text)):
        assert ref[1] in spec["components"][ref[0]], ref


# -- the declared routes: the spec is generated from the models that validate them ------------------

SEND_PATHS = ("/api/v1/send/message", "/api/v1/messages/send", "/api/v1/send/raw")


def test_every_declared_path_is_a_route_the_app_serves(app):
    served = {rule.rule for rule in app.url_map.iter_rules()}
    assert set(DECLARED) <= served


def test_the_send_schemas_are_the_validating_models(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in SEND_PATHS:
        model = DECLARED[path][0]
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, schema in {model.__name__: generated, **generated.pop("$defs", {})}.items():
            assert spec["components"]["schemas"][name] == schema
        for operation in spec["paths"][path].values():
            for content in operation["requestBody"]["content"].values():
                assert content["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}
    assert "from" in spec["components"]["schemas"]["SendMessage"]["properties"]
    assert spec["components"]["schemas"]["SendMessage"]["properties"]["tag"]["anyOf"][0]["maxLength"] == 255


def documented_schema(spec: dict, path: str, method: str, status: int) -> dict:
    """The schema the spec documents for this answer, with the components it refers to."""
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answered {status}, which is not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return {**response["content"]["application/json"]["schema"], "components": spec["components"]}


def send_answers(client, key):
    """One request for each answer a send route gives, the way clients send them."""
    good = {"to": ["a@example.com"], "from": "x@mailgoat.dev", "plain_body": "hi"}
    yield "/api/v1/send/message", client.post("/api/v1/send/message", json=good, headers=auth(key))
    yield "/api/v1/messages/send", client.post("/api/v1/messages/send", data={**good, "to": "a@example.com"},
                                               headers={"Authorization": f"Bearer {key}"})
    raw = {"mail_from": "x@mailgoat.dev", "rcpt_to": ["a@example.com"], "data": "U3ViamVjdDogaGkNCg0KYm9keQ=="}
    yield "/api/v1/send/raw", client.post("/api/v1/send/raw", json=raw, headers=auth(key))
    for bad in ({"subject": {}}, {"to": ["a@b@c"]}, {"to": []}, {"send_at": "soon"}):
        yield "/api/v1/send/message", client.post("/api/v1/send/message", json={**good, **bad}, headers=auth(key))
    yield "/api/v1/send/raw", client.post("/api/v1/send/raw", json={"rcpt_to": "a@example.com"}, headers=auth(key))
    yield "/api/v1/send/message", client.post("/api/v1/send/message", data="{", content_type="application/json",
                                              headers=auth(key))
    yield "/api/v1/send/message", client.post("/api/v1/send/message", json=good)
    idempotent = {**auth(key), "Idempotency-Key": "spec-1"}
    client.post("/api/v1/send/message", json=good, headers=idempotent)
    yield "/api/v1/send/message", client.post("/api/v1/send/message", json={**good, "plain_body": "other"},
                                              headers=idempotent)


def test_every_send_answer_is_documented_and_matches_its_schema(client, sending_key):
    spec = client.get("/api/v1/openapi.json").get_json()
    statuses = set()
    for path, response in send_answers(client, sending_key):
        schema = documented_schema(spec, path, "post", response.status_code)
        jsonschema.validate(response.get_json(), schema, cls=jsonschema.Draft202012Validator)
        statuses.add(response.status_code)
    assert statuses == {200, 400, 401, 409, 422}


# Request bodies the spec still describes by hand (docs/api.md lists them); a route leaves this
# list when its model is declared in schemas.py, and nothing new may join it.
NOT_YET_DECLARED = {
    ("/api/v1/deployments", "post"), ("/api/v1/silences", "post"), ("/api/v1/incidents", "post"),
    ("/api/v1/incidents/{incident_id}/updates", "post"), ("/api/v1/incidents/{incident_id}/postmortem", "put"),
    ("/api/v1/maintenances", "post"), ("/api/v1/subscribers", "post"),
}


def test_every_documented_request_body_is_generated_from_its_declared_model(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    with_body = {(path, method): operation for path, operations in spec["paths"].items()
                 for method, operation in operations.items() if "requestBody" in operation}
    hand_written = {where for where, operation in with_body.items() if where[0] not in DECLARED}
    assert hand_written == NOT_YET_DECLARED
    for (path, method), operation in with_body.items():
        if (path, method) in NOT_YET_DECLARED:
            continue
        model = DECLARED[path][0]
        assert operation["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model.__name__}"}, (path, method)
        generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, schema in {model.__name__: generated, **generated.pop("$defs", {})}.items():
            assert spec["components"]["schemas"][name] == schema, name


def test_the_declared_lengths_are_the_columns_lengths(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert schemas["NewCredential"]["properties"]["name"]["maxLength"] == 120
    assert schemas["NewWebhook"]["properties"]["url"]["maxLength"] == 2048
    assert schemas["Login"]["properties"]["email"]["maxLength"] == 320
    assert schemas["NewCredential"]["required"] == ["name"] and schemas["ById"]["required"] == ["id"]


# GET routes whose query parameters the spec still describes by hand.
QUERY_NOT_YET_DECLARED = {("/api/v1/credentials", "get")}


def test_every_documented_query_parameter_is_generated_from_its_declared_model(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    with_query = {(path, method): operation for path, operations in spec["paths"].items()
                  for method, operation in operations.items()
                  if any(parameter["in"] == "query" for parameter in operation.get("parameters", ()))}
    assert {where for where in with_query if where[0] not in DECLARED_QUERY} == QUERY_NOT_YET_DECLARED
    for path in DECLARED_QUERY:
        documented = [p for p in spec["paths"][path]["get"]["parameters"] if p["in"] == "query"]
        assert documented == query_parameters(path)
        assert {p["name"] for p in documented} == {
            field.alias or name for name, field in DECLARED_QUERY[path].model_fields.items()}
