"""GET /api/v1/events: Server-Sent Events for the caller's key, resumable with Last-Event-ID."""
import json
import time
import tomllib

from controlplane.settings import PROJECT_ROOT, Settings
from tests.conftest import new_key


def sse_events(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            events.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_stream_sends_new_events_and_resumes_from_last_event_id(make_app):
    app = make_app(EVENTS_POLL_SECONDS="0.05", EVENTS_STREAM_SECONDS="1")
    key = new_key(app, "send", name="k")
    other = new_key(app, "send", name="o")
    client = app.test_client()
    headers = {"X-Server-API-Key": key}
    body = {"to": ["a@example.com"], "from": "x@mailgoat.dev", "plain_body": "b"}
    first = client.post("/api/v1/send/message", json=body, headers=headers).get_json()
    client.post("/api/v1/send/message", json=body, headers={"X-Server-API-Key": other})
    second = client.post("/api/v1/send/message", json=body, headers=headers).get_json()

    response = client.get("/api/v1/events", headers={**headers, "Last-Event-ID": "0"})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    assert [e["data"]["data"]["message_id"] for e in events] == [first["message_id"], second["message_id"]]
    assert all(e["event"] == "message.queued" for e in events)

    resumed = client.get("/api/v1/events", headers={**headers, "Last-Event-ID": str(events[0]["id"])})
    assert [e["data"]["data"]["message_id"] for e in sse_events(resumed.get_data(as_text=True))] == [second["message_id"]]

    fresh = client.get("/api/v1/events", headers=headers)
    assert sse_events(fresh.get_data(as_text=True)) == []  # a new stream starts from now


def test_stream_needs_a_key_and_a_valid_last_event_id(make_app):
    app = make_app(EVENTS_STREAM_SECONDS="1")
    client = app.test_client()
    assert client.get("/api/v1/events").status_code == 401
    key = new_key(app, "send", name="k")
    bad = client.get("/api/v1/events", headers={"X-Server-API-Key": key, "Last-Event-ID": "yesterday"})
    assert bad.status_code == 400 and bad.get_json()["data"]["code"] == "InvalidLastEventId"


def test_a_last_event_id_of_unicode_digits_is_refused_with_400(make_app):
    app = make_app(EVENTS_STREAM_SECONDS="1")
    key = new_key(app, "send", name="k")
    for value in ("%C2%B3", "%D9%A3", "-1", "1.0", ""):
        response = app.test_client().get(f"/api/v1/events?last_event_id={value}", headers={"X-Server-API-Key": key})
        if value == "":  # an empty value is no value: the stream starts from now
            assert response.status_code == 200
            continue
        assert response.status_code == 400, value
        assert response.get_json()["data"]["code"] == "InvalidLastEventId"


def test_a_last_event_id_beyond_bigint_is_refused_with_400(make_app):
    app = make_app(EVENTS_STREAM_SECONDS="1")
    key = new_key(app, "send", name="k")
    client = app.test_client()
    too_big = client.get("/api/v1/events", headers={"X-Server-API-Key": key, "Last-Event-ID": str(2**63)})
    assert too_big.status_code == 400 and too_big.get_json()["data"]["code"] == "InvalidLastEventId"
    largest = client.get("/api/v1/events", headers={"X-Server-API-Key": key, "Last-Event-ID": str(2**63 - 1)})
    assert largest.status_code == 200 and sse_events(largest.get_data(as_text=True)) == []


def open_stream(client, key):
    return client.get("/api/v1/events", headers={"X-Server-API-Key": key}, buffered=False)


def test_streams_beyond_the_per_key_cap_are_refused_with_503_until_one_closes(make_app):
    app = make_app(EVENTS_STREAM_SECONDS="30", EVENTS_STREAMS_PER_KEY="2", EVENTS_STREAMS_MAX="10")
    key, other = new_key(app, "send", name="k"), new_key(app, "send", name="o")
    client = app.test_client()
    held = [open_stream(client, key), open_stream(client, key)]
    assert [r.status_code for r in held] == [200, 200]

    refused = open_stream(client, key)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
    assert refused.get_json()["data"]["code"] == "TooManyEventStreams"
    assert open_stream(client, other).status_code == 200  # the cap is per key

    held[0].close()
    assert open_stream(client, key).status_code == 200


def test_streams_beyond_the_process_cap_are_refused_with_503(make_app):
    app = make_app(EVENTS_STREAM_SECONDS="30", EVENTS_STREAMS_PER_KEY="5", EVENTS_STREAMS_MAX="2")
    keys = [new_key(app, "send", name=f"k{n}") for n in range(3)]
    client = app.test_client()
    assert [open_stream(client, k).status_code for k in keys[:2]] == [200, 200]
    refused = open_stream(client, keys[2])
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert refused.get_json()["data"]["code"] == "EventStreamsFull"


def test_a_stream_wakes_on_its_keys_events_and_ends_when_the_process_drains(make_app):
    app = make_app(EVENTS_POLL_SECONDS="0.05", EVENTS_STREAM_SECONDS="30")
    key = new_key(app, "send", name="k")
    client = app.test_client()
    stream = open_stream(client, key)
    chunks = iter(stream.response)
    assert next(chunks).startswith(b"retry:")
    sent = client.post("/api/v1/send/message", headers={"X-Server-API-Key": key},
                       json={"to": ["a@example.com"], "from": "x@mailgoat.dev", "plain_body": "b"}).get_json()
    started = time.monotonic()
    event = sse_events(next(chunks).decode())[0]
    assert event["data"]["data"]["message_id"] == sent["message_id"] and time.monotonic() - started < 5

    app.extensions["controlplane.health"].lifecycle.start_draining()
    assert list(chunks) == []  # ends within a poll interval, not after EVENTS_STREAM_SECONDS
    assert time.monotonic() - started < 5
    stream.close()
    assert open_stream(client, key).status_code == 503  # a draining process takes no new streams


def test_fly_admits_every_stream_a_web_machine_holds_plus_api_traffic(tmp_path):
    fly = tomllib.loads((PROJECT_ROOT / "fly.toml").read_text())
    settings = Settings.from_env({**fly["env"], "APP_ENV": "development", "DATA_DIR": str(tmp_path)})
    workers = int(fly["env"]["WEB_CONCURRENCY"])
    connections = int(fly["env"]["GUNICORN_WORKER_CONNECTIONS"])
    limits = fly["http_service"]["concurrency"]
    streams = workers * settings.events_streams_max
    assert limits["type"] == "requests"
    assert limits["hard_limit"] >= streams + 200  # full streams still leave the API room
    assert limits["hard_limit"] <= workers * connections  # the proxy never sends more than gunicorn takes
    assert settings.events_streams_max < connections
