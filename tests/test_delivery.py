"""The outbox against a Postal double: send, retry, fail, reclaim, never twice."""
import json
import threading
from datetime import timedelta

import pytest

from controlplane.delivery import claim_due, dispatch_due
from controlplane.extensions import db
from controlplane.gateway.models import Message
from controlplane.postal import postal_client
from controlplane.timeutil import utcnow
from tests.conftest import new_key


@pytest.fixture
def wired(make_app, postal):
    """An app whose Postal is the double, a sending key, and a way to run the dispatcher."""
    app = make_app(POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key, POSTAL_TRANSPORT="http",
                   DELIVERY_BACKOFF_SECONDS="0.01", DELIVERY_MAX_ATTEMPTS="3", POSTAL_TIMEOUT_SECONDS="1")
    key = new_key(app, "send,read", name="k")
    client = postal_client(app)
    settings = app.extensions["controlplane.settings"]

    def dispatch(worker="w1"):
        with app.app_context():
            try:
                return dispatch_due(settings, client, worker)
            finally:
                db.session.remove()

    return app, app.test_client(), {"X-Server-API-Key": key}, dispatch


def send(client, headers, **overrides):
    body = {"to": ["alice@example.com"], "from": "agent@mailgoat.dev", "subject": "s", "plain_body": "b", **overrides}
    response = client.post("/api/v1/send/message", json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def state_of(app, message_id):
    with app.app_context():
        row = db.session.query(Message).filter_by(message_id=message_id).one()
        db.session.expunge(row)
        return row


def test_dispatch_sends_and_stores_postal_ids(wired, postal):
    app, client, headers, dispatch = wired
    sent = send(client, headers, cc=["bob@example.com"])
    assert dispatch() == 1
    row = state_of(app, sent["message_id"])
    assert row.state == "sent" and row.attempts == 1 and row.sent_at is not None
    (call,) = postal.sent
    assert call["params"]["to"] == ["alice@example.com"] and call["params"]["cc"] == ["bob@example.com"]
    assert row.postal_message_id == call["message_id"]
    postal_id = call["messages"]["alice@example.com"]["id"]
    shown = client.get(f"/api/v1/messages/{postal_id}", headers=headers).get_json()
    assert shown["id"] == sent["message_id"] and shown["status"] == "sent"
    assert {r["address"]: r["postal_id"] for r in shown["recipients"]}["alice@example.com"] == postal_id
    assert dispatch() == 0  # nothing left


def test_postal_5xx_retries_with_backoff_then_succeeds(wired, postal):
    app, client, headers, dispatch = wired
    sent = send(client, headers)
    postal.mode = "error500"
    dispatch()
    row = state_of(app, sent["message_id"])
    assert row.state == "retrying" and row.attempts == 1 and "HTTP 500" in row.last_error
    assert row.next_attempt_at is not None
    postal.mode = "ok"
    import time

    time.sleep(0.05)
    dispatch()
    assert state_of(app, sent["message_id"]).state == "sent"


def test_retries_are_bounded(wired, postal):
    app, client, headers, dispatch = wired
    sent = send(client, headers)
    postal.mode = "error500"
    import time

    for _ in range(5):
        dispatch()
        time.sleep(0.1)
    row = state_of(app, sent["message_id"])
    assert row.state == "failed" and row.error_code == "RetriesExhausted" and row.attempts == 3


def test_timeouts_are_retried(wired, postal):
    app, client, headers, dispatch = wired
    sent = send(client, headers)
    postal.mode, postal.delay = "slow", 2
    dispatch()
    assert state_of(app, sent["message_id"]).state == "retrying"


def test_a_postal_error_code_fails_at_once(wired, postal):
    app, client, headers, dispatch = wired
    postal.unauthenticated_domains.add("mailgoat.dev")
    sent = send(client, headers)
    dispatch()
    row = state_of(app, sent["message_id"])
    assert row.state == "failed" and row.error_code == "UnauthenticatedFromAddress" and row.attempts == 1


def poison(app, message_id, params_json: str) -> None:
    """Put unsendable parameters straight into the outbox row, as an older build could have stored."""
    with app.app_context():
        row = db.session.query(Message).filter_by(message_id=message_id).one()
        row.params = params_json
        db.session.commit()


def test_a_message_that_cannot_be_encoded_fails_on_the_first_attempt_with_the_reason(wired, postal):
    app, client, headers, dispatch = wired
    sent = send(client, headers)
    poison(app, sent["message_id"], json.dumps({"to": ["alice@example.com"], "cc": [], "bcc": [],
                                                "from": "agent@mailgoat.dev", "plain_body": "bad \ud800 text"}))
    dispatch()
    row = state_of(app, sent["message_id"])
    assert row.state == "failed" and row.attempts == 1 and row.error_code == "Unsendable"
    assert "UnicodeEncodeError" in row.last_error
    assert postal.sent == []
    assert dispatch() == 0  # not retried


def test_a_postal_parameter_error_fails_at_once_with_its_message(wired, postal):
    app, client, headers, dispatch = wired
    raw = {"mail_from": "agent@mailgoat.dev", "rcpt_to": ["alice@example.com"], "data": "U3ViamVjdDogaGkNCg0K"}
    sent = client.post("/api/v1/send/raw", json=raw, headers=headers).get_json()
    poison(app, sent["message_id"], json.dumps({"mail_from": "agent@mailgoat.dev", "rcpt_to": ["alice@example.com"]}))
    dispatch()
    row = state_of(app, sent["message_id"])
    assert row.state == "failed" and row.attempts == 1 and row.error_code == "parameter-error"
    assert row.last_error == "`data` parameter is required but is missing"


def test_scheduled_messages_wait_for_their_time(wired, postal):
    app, client, headers, dispatch = wired
    sent = send(client, headers, send_at=(utcnow() + timedelta(hours=1)).isoformat())
    assert dispatch() == 0
    with app.app_context():
        row = db.session.query(Message).filter_by(message_id=sent["message_id"]).one()
        row.next_attempt_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert dispatch() == 1 and postal.sent


def test_an_expired_claim_is_taken_over(wired, postal):
    app, client, headers, dispatch = wired
    sent = send(client, headers)
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        assert len(claim_due(settings, "crashed-worker")) == 1  # claimed, then the worker "dies"
    assert dispatch("w2") == 0  # the claim is still live
    with app.app_context():
        row = db.session.query(Message).filter_by(message_id=sent["message_id"]).one()
        row.claim_expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert dispatch("w2") == 1
    row = state_of(app, sent["message_id"])
    assert row.state == "sent" and row.attempts == 2


def test_sink_transport_writes_mail_locally(make_app, tmp_path):
    app = make_app(POSTAL_TRANSPORT="sink", SINK_DIR=str(tmp_path / "sink"))
    key = new_key(app, "send", name="k")
    sent = send(app.test_client(), {"X-Server-API-Key": key})
    with app.app_context():
        dispatch_due(app.extensions["controlplane.settings"], postal_client(app), "w")
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "sink").glob("*.json")]
    assert record["params"]["to"] == ["alice@example.com"] and "alice@example.com" in record["messages"]
    assert state_of(app, sent["message_id"]).state == "sent"


def test_unconfigured_postal_leaves_messages_queued(make_app):
    app = make_app(POSTAL_TRANSPORT="http", POSTAL_API_URL="")
    assert postal_client(app) is None
    with app.app_context():
        assert dispatch_due(app.extensions["controlplane.settings"], None, "w") == 0


@pytest.mark.postgres
def test_concurrent_dispatchers_never_send_a_message_twice(make_app, postgres_url, postal):
    app = make_app(DATABASE_URL=postgres_url, POSTAL_API_URL=postal.url, POSTAL_API_KEY=postal.api_key,
                   POSTAL_TRANSPORT="http", DELIVERY_BATCH_SIZE="5")
    key = new_key(app, "send", name="k")
    client = app.test_client()
    for i in range(60):
        send(client, {"X-Server-API-Key": key}, to=[f"user{i}@example.com"])
    settings = app.extensions["controlplane.settings"]

    def worker(name):
        pc = postal_client(app)
        with app.app_context():
            while dispatch_due(settings, pc, name):
                pass
            db.session.remove()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    addresses = [a for call in postal.sent for a in call["params"]["to"]]
    assert len(addresses) == 60 and len(set(addresses)) == 60
    with app.app_context():
        assert {m.state for m in db.session.query(Message).all()} == {"sent"}


def test_outbox_metrics_show_depth_and_oldest_age(wired, postal):
    from prometheus_client.parser import text_string_to_metric_families

    app, client, headers, dispatch = wired
    send(client, headers)
    send(client, headers, send_at=(utcnow() + timedelta(hours=1)).isoformat())
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    depth = {s.labels["state"]: s.value for s in families["mailgoat_outbox_messages"]}
    assert depth["queued"] == 1 and depth["scheduled"] == 1 and depth["retrying"] == 0
    assert families["mailgoat_outbox_oldest_due_age_seconds"][0].value >= 0
    dispatch()
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    assert {s.labels["state"]: s.value for s in families["mailgoat_outbox_messages"]}["queued"] == 0
    assert families["mailgoat_outbox_oldest_due_age_seconds"][0].value == 0
    sent = {s.labels["status"]: s.value for s in families["mailgoat_emails_sent"] if s.name.endswith("_total")}
    assert sent["sent"] >= 1


def test_parallel_dispatch_sends_each_message_once(wired, postal):
    from concurrent.futures import ThreadPoolExecutor

    app, client, headers, _ = wired
    for i in range(20):
        send(client, headers, to=[f"user{i}@example.com"])
    settings = app.extensions["controlplane.settings"]
    with ThreadPoolExecutor(6) as pool, app.app_context():
        while dispatch_due(settings, postal_client(app), "w", pool):
            pass
    addresses = [a for call in postal.sent for a in call["params"]["to"]]
    assert sorted(addresses) == sorted(f"user{i}@example.com" for i in range(20))
    with app.app_context():
        assert {m.state for m in db.session.query(Message).all()} == {"sent"}
