"""Per-key rate limits (burst, hour, today) and the monthly quota, with the Node CLI's headers.

Counters live in Redis when REDIS_URL is set (shared by every process) and in memory otherwise
(per process: fine for `controlplane run`, not for several gunicorn workers). The monthly quota
is counted from the messages table, which is authoritative whatever the limiter storage.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from limits import RateLimitItemPerDay, RateLimitItemPerHour, RateLimitItemPerMinute, storage, strategies
from sqlalchemy import func, select

from ..extensions import db
from .envelope import GatewayError
from .models import ApiKey, Message


class KeyLimits:
    def __init__(self, settings):
        self.settings = settings
        uri = settings.redis_url or "memory://"
        self.limiter = strategies.FixedWindowRateLimiter(storage.storage_from_string(uri))

    def _buckets(self, key: ApiKey):
        s = self.settings
        return (
            ("burst", RateLimitItemPerMinute(key.rate_limit_burst or s.rate_limit_burst_per_minute)),
            ("hour", RateLimitItemPerHour(key.rate_limit_hour or s.rate_limit_per_hour)),
            ("today", RateLimitItemPerDay(key.rate_limit_day or s.rate_limit_per_day)),
        )

    def consume(self, key: ApiKey) -> dict[str, str]:
        """Count one send against every bucket; raise RateLimited (with headers) when one is full."""
        buckets = self._buckets(key)
        ident = str(key.id)
        full = next((name for name, item in buckets if not self.limiter.test(item, "key", ident)), None)
        if full is None:
            for _, item in buckets:
                self.limiter.hit(item, "key", ident)
        headers, resets = {}, {}
        for name, item in buckets:
            stats = self.limiter.get_window_stats(item, "key", ident)
            resets[name] = stats.reset_time
            headers[f"X-RateLimit-Limit-{name}"] = str(item.amount)
            headers[f"X-RateLimit-Remaining-{name}"] = str(max(stats.remaining, 0))
            headers[f"X-RateLimit-Reset-{name}"] = str(math.ceil(stats.reset_time))
        if full is not None:
            retry_after = max(1, math.ceil(resets[full] - time.time()))
            raise GatewayError("RateLimited", f"Rate limit reached for this key ({full}); retry in {retry_after}s",
                               429, extra={"bucket": full}, headers={**headers, "Retry-After": str(retry_after)})
        return headers

    def consume_login(self, client_ip: str) -> None:
        """Password guessing is slowed per client address."""
        item = RateLimitItemPerMinute(self.settings.login_attempts_per_minute)
        if not self.limiter.hit(item, "login", client_ip):
            reset = self.limiter.get_window_stats(item, "login", client_ip).reset_time
            retry_after = max(1, math.ceil(reset - time.time()))
            raise GatewayError("RateLimited", f"Too many sign-in attempts; retry in {retry_after}s", 429,
                               headers={"Retry-After": str(retry_after)})

    def check_quota(self, key: ApiKey) -> None:
        quota = key.monthly_quota if key.monthly_quota is not None else self.settings.monthly_quota
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
