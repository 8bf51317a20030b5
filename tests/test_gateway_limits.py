"""Per-key rate limits with the Node CLI's headers, 429 with Retry-After, and the monthly quota."""
import time

import pytest

from tests.conftest import new_key

BODY = {"to": ["a@example.com"], "from": "x@mailgoat.dev", "plain_body": "b"}


def make_limited_key(app, **options):
    return new_key(app, "send", name="k", **options)


def start_inside_one_minute_window(seconds_needed: float = 15.0) -> None:
    """The limiter's windows are whole minutes (fixed-window): a test that must see several
    requests land in one window waits, if need be, until that much of the minute is left."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        time.sleep(left + 0.05)


def test_every_send_carries_the_three_buckets(app, client, sending_key):
    response = client.post("/api/v1/send/message", json=BODY, headers={"X-Server-API-Key": sending_key})
    assert response.status_code == 200
    for bucket in ("today", "hour", "burst"):
        assert int(response.headers[f"X-RateLimit-Limit-{bucket}"]) >= 1
        assert int(response.headers[f"X-RateLimit-Remaining-{bucket}"]) == int(
            response.headers[f"X-RateLimit-Limit-{bucket}"]) - 1
        assert int(response.headers[f"X-RateLimit-Reset-{bucket}"]) >= int(time.time())
    assert response.headers["X-Request-Id"]


def test_burst_limit_answers_429_with_retry_after(app, client):
    key = make_limited_key(app, rate_limits={"burst": 2})
    headers = {"X-Server-API-Key": key}
    start_inside_one_minute_window(2)
    assert [client.post("/api/v1/send/message", json=BODY, headers=headers).status_code for _ in range(2)] == [200, 200]
    limited = client.post("/api/v1/send/message", json=BODY, headers=headers)
    assert limited.status_code == 429
    body = limited.get_json()
    assert body["data"]["code"] == "RateLimited" and body["data"]["bucket"] == "burst"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Remaining-burst"] == "0"


def test_limits_are_per_key(app, client, sending_key):
    key = make_limited_key(app, rate_limits={"burst": 1})
    start_inside_one_minute_window(2)
    client.post("/api/v1/send/message", json=BODY, headers={"X-Server-API-Key": key})
    assert client.post("/api/v1/send/message", json=BODY, headers={"X-Server-API-Key": key}).status_code == 429
    assert client.post("/api/v1/send/message", json=BODY, headers={"X-Server-API-Key": sending_key}).status_code == 200


def test_monthly_quota(app, client):
    key = make_limited_key(app, monthly_quota=2)
    headers = {"X-Server-API-Key": key}
    for _ in range(2):
        assert client.post("/api/v1/send/message", json=BODY, headers=headers).status_code == 200
    over = client.post("/api/v1/send/message", json=BODY, headers=headers)
    assert over.status_code == 429 and over.get_json()["data"]["code"] == "QuotaExceeded"
    assert int(over.headers["Retry-After"]) > 0


def test_counters_live_in_redis_when_configured(make_app):
    """Redis is what every gunicorn worker and machine shares: the count must be there, not in memory."""
    redis = pytest.importorskip("redis")
    server = redis.Redis.from_url("redis://127.0.0.1:6379/15")
    try:
        server.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    server.flushdb()
    app = make_app(REDIS_URL="redis://127.0.0.1:6379/15")
    key = make_limited_key(app, rate_limits={"burst": 2})
    client, headers = app.test_client(), {"X-Server-API-Key": key}
    assert [client.post("/api/v1/send/message", json=BODY, headers=headers).status_code for _ in range(3)] == [200, 200, 429]
    assert any(name.startswith(b"LIMITS:LIMITER/mailgoat/key:") for name in server.keys("*"))
    server.flushdb()  # another worker resetting the shared counters is seen at once
    assert client.post("/api/v1/send/message", json=BODY, headers=headers).status_code == 200


def test_unreachable_redis_falls_back_to_memory_and_still_limits(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens on port 1
    key = make_limited_key(app, rate_limits={"burst": 2})
    client, headers = app.test_client(), {"X-Server-API-Key": key}
    codes = [client.post("/api/v1/send/message", json=BODY, headers=headers).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_login_attempts_are_limited_per_address(make_app):
    app = make_app(LOGIN_ATTEMPTS_PER_MINUTE="2")
    client = app.test_client()
    start_inside_one_minute_window()  # five logins, each hashing a password, on a loaded machine
    attempt = {"email": "nobody@example.com", "password": "wrong"}
    codes = [client.post("/api/v1/auth/login", json=attempt, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code
             for _ in range(3)]
    assert codes == [401, 401, 429]
    other = client.post("/api/v1/auth/login", json=attempt, environ_base={"REMOTE_ADDR": "192.0.2.2"})
    assert other.status_code == 401
    limited = client.post("/api/v1/auth/login", json=attempt, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert limited.get_json()["data"]["code"] == "RateLimited" and 1 <= int(limited.headers["Retry-After"]) <= 60


def test_invalid_limits_are_rejected(client, admin_key):
    for payload in ({"name": "x", "rate_limits": {"burst": 0}}, {"name": "x", "rate_limits": "fast"},
                    {"name": "x", "monthly_quota": -5}):
        response = client.post("/api/v1/credentials", json=payload, headers={"X-Server-API-Key": admin_key})
        assert response.status_code == 422 and response.get_json()["data"]["code"] == "InvalidLimits"
