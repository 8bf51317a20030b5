"""GET /api/v1/events: Server-Sent Events for the caller's key, resumable with Last-Event-ID."""
import json
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
