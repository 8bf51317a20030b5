"""Sentry, exercised through a capturing transport: nothing goes to the network."""
import base64
import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from controlplane.delivery import dispatch_due
from controlplane.extensions import db
from controlplane.jobs import Job, Worker
from controlplane.postal import postal_client
from controlplane.telemetry.sentry import FILTERED, scrub
from tests.conftest import POSTGRES_ADMIN_URL, new_key, wait_for

log = logging.getLogger("controlplane.test")


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
    scrubbed = scrub({"headers": {"Authorization": "Bearer x"}, "list": [{"jwt": "a"}, "Bearer zzz"], "n": 3})
    assert scrubbed == {"headers": {"Authorization": FILTERED}, "list": [{"jwt": FILTERED}, FILTERED], "n": 3}


# ---------------------------------------------------------------- no mail, no credentials
#
# Each leak measured on a real Sentry project, reproduced through the same code paths. Values are
# built at run time, so Sentry's source context (the lines around a frame) cannot hold them; the
# assertions read the envelope's bytes, exactly what would go over the wire.


def wire(transport) -> bytes:
    return b"".join(envelope.serialize() for envelope in transport.envelopes)


def assert_none_sent(transport, secrets: dict) -> None:
    sentry_sdk.flush()
    sent = wire(transport)
    leaked = [name for name, secret in secrets.items() if secret.encode() in sent]
    assert not leaked, f"sent to Sentry: {leaked}"


def mail(nonce: str) -> dict:
    """A message whose every private part is unique to this test run."""
    return {
        "to": f"alice.{nonce[:10]}@example.com", "cc": f"bob.{nonce[:10]}@example.org",
        "bcc": f"carol.{nonce[:10]}@example.net", "from": f"agent.{nonce[:10]}@mailgoat.dev",
        "subject": f"Your invoice {nonce}", "plain_body": f"Dear customer {nonce}",
        "html_body": f"<p>Dear customer, html {nonce}</p>",
        "attachment": base64.b64encode(f"attachment bytes {nonce}".encode()).decode(),
    }


def send_body(parts: dict) -> dict:
    return {"to": [parts["to"]], "cc": [parts["cc"]], "bcc": [parts["bcc"]], "from": parts["from"],
            "subject": parts["subject"], "plain_body": parts["plain_body"], "html_body": parts["html_body"],
            "attachments": [{"name": "invoice.pdf", "content_type": "application/pdf", "data": parts["attachment"]}]}


def refuse_message_rows(app) -> None:
    """A real database fault while the message row is flushed: a trigger that refuses the insert."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text(
                "CREATE FUNCTION refuse_messages() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'messages are refused' USING ERRCODE = 'check_violation'; END $$"))
            db.session.execute(text("CREATE TRIGGER refuse_messages BEFORE INSERT ON messages "
                                    "FOR EACH ROW EXECUTE FUNCTION refuse_messages()"))
        else:
            db.session.execute(text("CREATE TRIGGER refuse_messages BEFORE INSERT ON messages "
                                    "BEGIN SELECT RAISE(ABORT, 'messages are refused'); END"))
        db.session.commit()


def frames_of(event) -> list[dict]:
    return [frame for exception in event["exception"]["values"]
            for frame in (exception.get("stacktrace") or {}).get("frames", [])]


def test_a_send_failing_inside_sqlalchemy_sends_no_mail_to_sentry_but_what_on_call_needs(make_app, transport):
    app = make_app(SENTRY_DSN="https://public@sentry.example/1", sentry_transport=transport)
    key = new_key(app, "send")
    refuse_message_rows(app)
    parts = mail(uuid.uuid4().hex)

    response = app.test_client().post("/api/v1/send/message", json=send_body(parts),
                                      headers={"X-Server-API-Key": key})

    assert response.status_code == 500
    assert_none_sent(transport, {**parts, "key": key})
    (event,) = transport.events()
    assert event["exception"]["values"][-1]["type"] == "IntegrityError"
    ours = [frame for frame in frames_of(event) if "controlplane/gateway/" in frame.get("abs_path", "")]
    assert any(frame["function"] == "add_message" and frame["lineno"] > 0 for frame in ours)
    assert not any("vars" in frame for frame in frames_of(event)), "no frame locals, ours or SQLAlchemy's"
    assert event["tags"]["request_id"] == response.get_json()["request_id"]
    assert event["tags"]["route"] == "/api/v1/send/message"
    assert "[SQL: INSERT INTO messages" in event["exception"]["values"][-1]["value"], "the statement stays"


def test_the_log_of_a_send_failing_inside_sqlalchemy_holds_the_statement_but_no_mail(make_app, caplog):
    # The JSON log carries the traceback; SQLAlchemy's error text would list the row's values.
    app = make_app()
    key = new_key(app, "send")
    refuse_message_rows(app)
    parts = mail(uuid.uuid4().hex)

    with caplog.at_level(logging.ERROR):
        response = app.test_client().post("/api/v1/send/message", json=send_body(parts),
                                          headers={"X-Server-API-Key": key})

    assert response.status_code == 500
    logged = "\n".join(record.getMessage() + (caplog.text or "") for record in caplog.records)
    assert "INSERT INTO messages" in logged, "the statement stays for on-call"
    for name, secret in parts.items():
        assert secret not in logged, f"the {name} reached the log"


def deliver_once(app, client) -> None:
    with app.app_context():
        try:
            assert dispatch_due(app.extensions["controlplane.settings"], client, "worker-1") == 1
        finally:
            db.session.remove()


class PostalClientEchoingItsRequest:
    """The Postal client failing the way a bug does, with an error that carries the request it was
    given: its repr (and the worker's frame locals) hold the whole message."""

    def call(self, path, params):
        raise RuntimeError("cannot send", params)


def test_a_delivery_error_whose_exception_repr_holds_the_message_sends_no_mail_to_sentry(make_app, transport):
    app = make_app(SENTRY_DSN="https://public@sentry.example/1", sentry_transport=transport)
    parts = mail(uuid.uuid4().hex)
    accepted = app.test_client().post("/api/v1/send/message", json=send_body(parts),
                                      headers={"X-Server-API-Key": new_key(app, "send")})
    assert accepted.status_code == 200, accepted.get_json()

    deliver_once(app, PostalClientEchoingItsRequest())

    assert_none_sent(transport, parts)
    (event,) = transport.events()
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "RuntimeError"
    assert exception["value"].startswith("('cannot send', {'to': ['[Filtered]'], 'cc': ['[Filtered]']"), exception
    assert "'plain_body': '[Filtered]'" in exception["value"]
    assert any(frame["function"] == "_call_postal" and frame["lineno"] > 0 for frame in frames_of(event))
    assert not any("vars" in frame for frame in frames_of(event))


def received_bodies(receiver) -> list[bytes]:
    """What a Sentry HTTP transport posted to `receiver`: envelopes, gzip-compressed."""
    return [gzip.decompress(post["body"]) if post["headers"].get("Content-Encoding") == "gzip" else post["body"]
            for post in receiver.received]


def received_events(receiver) -> list[dict]:
    events = []
    for body in received_bodies(receiver):
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2]):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


@pytest.mark.slow
def test_the_worker_process_reports_to_sentry_without_mail(make_app, base_env, receiver, tmp_path):
    """`controlplane worker` itself, reporting over HTTP to a local stand-in for Sentry: the same
    initialisation as the web (create_app), so no frame locals (`stored_params` holds the message)."""
    port = receiver.server.server_address[1]
    env = {**base_env, "POSTAL_TRANSPORT": "http", "POSTAL_API_URL": "http://127.0.0.1:notaport",
           "POSTAL_API_KEY": "k" * 24, "DELIVERY_BACKOFF_SECONDS": "60"}
    app = make_app(**env)
    parts = mail(uuid.uuid4().hex)
    accepted = app.test_client().post("/api/v1/send/message", json=send_body(parts),
                                      headers={"X-Server-API-Key": new_key(app, "send")})
    assert accepted.status_code == 200, accepted.get_json()

    with (tmp_path / "worker.log").open("wb") as log_file:  # a file, not a pipe nobody reads
        worker = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "worker"], stdout=subprocess.DEVNULL, stderr=log_file,
            env={**os.environ, **env, "SENTRY_DSN": f"http://public@127.0.0.1:{port}/1", "LOG_LEVEL": "WARNING"})
    try:
        # The Postal URL's port is not a number: httpx raises InvalidURL, a bug-like error the
        # worker logs with its traceback, which Sentry reports.
        event = wait_for(lambda: next((event for event in received_events(receiver)
                                       if event["logentry"]["message"] == "unexpected error calling Postal"), None),
                         timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=45)
        except subprocess.TimeoutExpired:
            worker.kill()
    sent = b"".join(received_bodies(receiver))
    assert [name for name, secret in parts.items() if secret.encode() in sent] == []
    assert event["exception"]["values"][-1]["type"] == "InvalidURL"
    assert any(frame["function"] == "_call_postal" and "vars" not in frame for frame in frames_of(event))


def test_a_database_url_with_its_password_in_an_operational_error_is_scrubbed(make_app, transport,
                                                                               postgres_databases):
    app = make_app(SENTRY_DSN="https://public@sentry.example/1", sentry_transport=transport)
    password = f"pw-{uuid.uuid4().hex[:16]}"
    # A URL pasted where a database name belongs: PostgreSQL's answer quotes it whole.
    # (PostgreSQL keeps 63 bytes of a name: the URL fits.)
    misconfigured = make_url(POSTGRES_ADMIN_URL).set(database=f"postgresql://mailgoat:{password}@db.internal/mailgoat")

    def connect_to_the_misconfigured_database(_worker):
        with create_engine(misconfigured, poolclass=NullPool).connect():
            pass

    worker = Worker(app)
    try:
        worker._run(Job("probe", 60, connect_to_the_misconfigured_database, leader_only=False, recorded=False))
    finally:
        worker.send_pool.shutdown()
        worker.check_runner.shutdown()

    assert_none_sent(transport, {"password": password})
    (event,) = transport.events()
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "OperationalError"
    assert "postgresql://mailgoat:[Filtered]@db.internal/mailgoat" in exception["value"]


def test_addresses_and_credentials_are_scrubbed_from_messages_breadcrumbs_extra_and_contexts(make_app, transport):
    app = make_app(SENTRY_DSN="https://public@sentry.example/1", sentry_transport=transport)
    nonce = uuid.uuid4().hex
    secrets = {
        "recipient": f"dave.{nonce[:10]}@example.com", "sender": f"erin.{nonce[:10]}@mailgoat.dev",
        "database": f"db-{nonce}", "redis": f"redis-{nonce}", "webhook": f"hook-{nonce}",
    }
    urls = {"database": f"postgresql://mailgoat:{secrets['database']}@db.internal:5432/mailgoat",
            "redis": f"redis://:{secrets['redis']}@cache.internal:6379/0",
            "webhook": f"https://ops:{secrets['webhook']}@hooks.example.com/notify"}

    @app.post("/explode")
    def explode():
        log.warning("retrying %s for %s via %s", secrets["recipient"], secrets["sender"], urls["redis"])
        sentry_sdk.set_extra("target", urls["webhook"])
        sentry_sdk.set_context("delivery", {"recipient": secrets["recipient"], "database": urls["database"]})
        log.error("delivery to %s failed", secrets["recipient"])  # an event of its own (a log record)
        raise LookupError(f"no route from {secrets['sender']} to {secrets['recipient']} ({urls['database']})")

    assert app.test_client().post("/explode").status_code == 500

    assert_none_sent(transport, secrets)
    events = transport.events()
    assert sorted(e.get("exception", {}).get("values", [{}])[-1].get("type", "log") for e in events) \
        == ["LookupError", "log"]
    failure = next(e for e in events if "exception" in e)
    assert "no route from [Filtered] to [Filtered] (postgresql://mailgoat:[Filtered]@db.internal:5432/mailgoat)" \
        == failure["exception"]["values"][-1]["value"]


def test_a_secret_in_the_path_is_filtered_from_the_reported_url(make_app, transport):
    app = make_app(SENTRY_DSN="https://public@sentry.example/1", sentry_transport=transport)

    @app.get("/things/<token>/confirm")
    def confirm(token):
        raise RuntimeError("confirming failed")

    token = uuid.uuid4().hex
    assert app.test_client().get(f"/things/{token}/confirm").status_code == 500

    assert_none_sent(transport, {"token": token})
    (event,) = transport.events()
    assert event["request"]["url"] == "http://localhost/things/[Filtered]/confirm"
    assert event["tags"]["route"] == "/things/<token>/confirm"


@pytest.mark.parametrize("raw, scrubbed", [
    ("postgresql://user:pass@host/db", "postgresql://user:[Filtered]@host/db"),
    ("redis://:pass@cache:6379/0", "redis://:[Filtered]@cache:6379/0"),
    ("see https://user:pa%40ss@example.com/x now", "see https://user:[Filtered]@example.com/x now"),
    ("mail a.b+tag@example.co.uk, Bob <bob@example.org>", "mail [Filtered], Bob <[Filtered]>"),
    ("{'plain_body': 'Dear \\'you\\'', 'to': []}", "{'plain_body': '[Filtered]', 'to': []}"),
    ('Message(html_body="<p>hi</p>", id=3)', 'Message(html_body="[Filtered]", id=3)'),
    ("[SQL: INSERT INTO t (a) VALUES (?)]\n[parameters: ('secret', 1)]\n(Background on this error at: x)",
     "[SQL: INSERT INTO t (a) VALUES (?)]\n[parameters: [Filtered]]\n(Background on this error at: x)"),
    ("GET /x?api_key=abc&page=2", "GET /x?api_key=[Filtered]&page=2"),
])
def test_scrub_text_removes_credentials_addresses_and_mail_fields_from_free_text(raw, scrubbed):
    assert scrub(raw) == scrubbed


@pytest.mark.parametrize("shape", ["a", "a-", "a.", "a@", "a://", "data", "token=", "'data': '\\", "[parameters: "])
def test_scrubbing_long_text_takes_linear_time_so_a_report_never_holds_up_a_request(shape):
    text = shape * (20_000 // len(shape))  # backtracking patterns took over a minute on 20 kB of "a-"
    started = time.perf_counter()
    scrub({"exception": {"values": [{"value": text}]}})
    assert time.perf_counter() - started < 1.0
