"""Sentry, exercised through a capturing transport: nothing goes to the network."""
import uuid

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport


class CapturingTransport(Transport):
    def __init__(self, options=None):
        super().__init__(options)
        self.envelopes = []

    def capture_envelope(self, envelope):
        self.envelopes.append(envelope)

    def events(self):
        return [item.payload.json for env in self.envelopes for item in env.items if item.type == "event"]


@pytest.fixture
def transport():
    transport = CapturingTransport()
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None)


def test_errors_reach_sentry_scrubbed_with_environment_and_release(make_app, transport):
    app = make_app(SENTRY_DSN="https://public@sentry.example/1", sentry_transport=transport)

    @app.post("/explode")
    def explode():
        from flask import request

        # Frame variables Sentry captures; the values come from the request, not this source.
        password = request.json["password"]  # noqa: F841
        api_key = request.json["key"]  # noqa: F841
        raise RuntimeError(f"failed for Bearer {request.json['token']}")

    # Built at run time so that Sentry's source context (which shows these lines) cannot hold them.
    nonce = uuid.uuid4().hex
    secrets = {
        "password": f"hunter2-{nonce}", "key": f"mg_live_{nonce}", "body": f"Dear customer {nonce}",
        "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0." + nonce, "postal": f"pk{nonce[:22]}",
        "bearer": f"abc.def.{nonce}",
    }
    response = app.test_client().post(
        "/explode", json={"plain_body": secrets["body"], "to": ["a@example.com"], "password": secrets["password"],
                          "key": secrets["key"], "token": secrets["token"]},
        headers={"X-Server-API-Key": secrets["postal"], "Authorization": f"Bearer {secrets['bearer']}"},
    )
    assert response.status_code == 500
    sentry_sdk.flush()
    events = transport.events()
    assert len(events) == 1
    event = events[0]
    assert event["environment"] == "development"
    from controlplane.version import VERSION

    assert event["release"] == VERSION
    dumped = str(event)
    for name, secret in secrets.items():
        assert secret not in dumped, name
    assert event["exception"]["values"][0]["type"] == "RuntimeError"


def test_sentry_is_off_without_a_dsn(make_app):
    from controlplane.telemetry.sentry import init_sentry

    app = make_app()
    assert init_sentry(app.extensions["controlplane.settings"]) is False


def test_scrub_handles_nested_structures():
    from controlplane.telemetry.sentry import FILTERED, scrub

    scrubbed = scrub({"headers": {"Authorization": "Bearer x"}, "list": [{"jwt": "a"}, "Bearer zzz"], "n": 3})
    assert scrubbed == {"headers": {"Authorization": FILTERED}, "list": [{"jwt": FILTERED}, FILTERED], "n": 3}
