"""Usage analytics: per key per day by outcome, rolled up from messages."""
from controlplane.extensions import db
from controlplane.gateway.models import Message
from controlplane.gateway.usage import roll_up

BODY = {"to": ["a@example.com"], "from": "x@mailgoat.dev", "plain_body": "b"}


def test_roll_up_counts_outcomes_per_key_and_day(app, client, make_key):
    key_id, key = make_key("send", name="a")
    other_id, other = make_key("send", name="b")
    for _ in range(4):
        client.post("/api/v1/send/message", json=BODY, headers={"X-Server-API-Key": key})
    client.post("/api/v1/send/message", json=BODY, headers={"X-Server-API-Key": other})
    with app.app_context():
        rows = db.session.query(Message).filter_by(api_key_id=key_id).order_by(Message.id).all()
        for row, state in zip(rows, ("delivered", "bounced", "failed", "queued")):
            row.state = state
        db.session.commit()
        assert roll_up() == 2
        assert roll_up() == 2  # idempotent
    report = client.get("/api/v1/usage", headers={"X-Server-API-Key": key}).get_json()["data"]
    assert report["totals"] == {"accepted": 4, "sent": 2, "delivered": 1, "bounced": 1, "failed": 1}
    assert [d["key_id"] for d in report["days"]] == [key_id]


def test_readers_see_every_key_and_can_filter(app, client, make_key):
    key_id, key = make_key("send", name="a")
    _, reader = make_key("read", name="r")
    client.post("/api/v1/send/message", json=BODY, headers={"X-Server-API-Key": key})
    with app.app_context():
        roll_up()
    everything = client.get("/api/v1/usage", headers={"X-Server-API-Key": reader}).get_json()["data"]
    assert everything["totals"]["accepted"] == 1
    filtered = client.get(f"/api/v1/usage?key_id={key_id + 100}", headers={"X-Server-API-Key": reader})
    assert filtered.get_json()["data"]["totals"]["accepted"] == 0


def test_bad_dates_are_400(client, sending_key):
    for query in ("from=yesterday", "from=2026-02-01&to=2026-01-01"):
        response = client.get(f"/api/v1/usage?{query}", headers={"X-Server-API-Key": sending_key})
        assert response.status_code == 400 and response.get_json()["data"]["code"] == "InvalidDate", query
