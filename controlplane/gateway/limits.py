"""Per-key rate limits (burst, hour, today) through Flask-Limiter, the Node CLI's headers, and the
monthly quota.

Counters live in Redis when REDIS_URL is set (shared by every process) and in memory otherwise
(per process: fine for `controlplane run`, not for several gunicorn workers). If Redis becomes
unreachable, counting falls back to memory rather than refusing mail. The monthly quota is
counted from the messages table, which is authoritative whatever the limiter storage.

Flask-Limiter's own single-bucket headers are off: MailGoat's clients read one set per bucket,
`X-RateLimit-{Limit,Remaining,Reset}-{burst,hour,today}`.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from flask import current_app, g, request
from flask_limiter import RequestLimit
from flask_limiter.errors import RateLimitExceeded
from sqlalchemy import func, select

from ..extensions import db, limiter
from .envelope import GatewayError
from .models import ApiKey, Message

# The window of each limit names its bucket in the headers.
BUCKET_BY_GRANULARITY = {"minute": "burst", "hour": "hour", "day": "today"}

def init_limits(app, settings) -> None:
    app.config["RATELIMIT_STORAGE_URI"] = settings.redis_url or "memory://"
    limiter.init_app(app)


def _settings():
    return current_app.extensions["controlplane.settings"]


def _key_limits() -> str:
    key: ApiKey = g.api_key
    s = _settings()
    return (f"{key.rate_limit_burst or s.rate_limit_burst_per_minute}/minute;"
            f"{key.rate_limit_hour or s.rate_limit_per_hour}/hour;"
            f"{key.rate_limit_day or s.rate_limit_per_day}/day")


# Under @requires, so the key is known: one set of counters per key, shared by every send route.
send_limit = limiter.shared_limit(_key_limits, scope="send", key_func=lambda: f"key:{g.api_key.id}")
# Password guessing is slowed per client address.
login_limit = limiter.limit(lambda: f"{_settings().login_attempts_per_minute}/minute", scope="login")


def _bucket(limit: RequestLimit) -> str:
    return BUCKET_BY_GRANULARITY.get(limit.limit.GRANULARITY.name, limit.limit.GRANULARITY.name)


def _resets_at(limit: RequestLimit) -> float:
    # RequestLimit.reset_at adds a second of margin; the window itself is exact.
    return limit.window.reset_time


def rate_headers() -> dict[str, str]:
    """The per-bucket headers for the limits this request was counted against."""
    headers = {}
    for limit in limiter.current_limits:
        name = _bucket(limit)
        headers[f"X-RateLimit-Limit-{name}"] = str(limit.limit.amount)
        headers[f"X-RateLimit-Remaining-{name}"] = str(max(limit.remaining, 0))
        headers[f"X-RateLimit-Reset-{name}"] = str(math.ceil(_resets_at(limit)))
    return headers


def rate_limited(exc: RateLimitExceeded) -> GatewayError:
    """The JSON error for a breached limit, with Retry-After for the bucket that is full."""
    if request.endpoint == "gateway.login":
        reset = _resets_at(limiter.current_limit) if limiter.current_limit else time.time() + 60
        retry_after = max(1, math.ceil(reset - time.time()))
        return GatewayError("RateLimited", f"Too many sign-in attempts; retry in {retry_after}s", 429,
                            headers={"Retry-After": str(retry_after)})
    breached = [limit for limit in limiter.current_limits if limit.breached]
    # The longest breached window decides when a send can succeed again.
    full = max(breached, key=_resets_at) if breached else limiter.current_limit
    name = _bucket(full) if full else "burst"
    retry_after = max(1, math.ceil((_resets_at(full) if full else time.time() + 60) - time.time()))
    return GatewayError("RateLimited", f"Rate limit reached for this key ({name}); retry in {retry_after}s", 429,
                        extra={"bucket": name}, headers={**rate_headers(), "Retry-After": str(retry_after)})


def check_quota(settings, key: ApiKey) -> None:
    quota = key.monthly_quota if key.monthly_quota is not None else settings.monthly_quota
    if not quota:
        return
    now = datetime.now(timezone.utc)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    used = db.session.execute(
        select(func.count()).select_from(Message)
        .where(Message.api_key_id == key.id, Message.created_at >= month_start)
    ).scalar_one()
    if used >= quota:
        next_month = (month_start.replace(year=now.year + 1, month=1) if now.month == 12
                      else month_start.replace(month=now.month + 1))
        retry_after = math.ceil((next_month - now).total_seconds())
        raise GatewayError("QuotaExceeded", f"Monthly quota of {quota} messages used up", 429,
                           extra={"quota": quota, "used": used}, headers={"Retry-After": str(retry_after)})
