"""Redis: a PING round trip; unconfigured without REDIS_URL."""
from time import perf_counter

from . import CheckFailed, CheckKind, Metric, Observation


class RedisCheck(CheckKind):
    name = "redis"
    metrics = {"latency_ms": Metric("ms")}
    primary_metric = "latency_ms"

    def validate_target(self, target) -> None:
        if target is not None and not str(target).startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL (or omitted to use REDIS_URL)")

    def run(self, spec, ctx) -> Observation:
        url = spec.target or ctx.settings.redis_url
        if not url:
            return Observation(status="unconfigured", message="REDIS_URL is not set")
        import redis

        client = redis.Redis.from_url(url, socket_timeout=spec.timeout, socket_connect_timeout=spec.timeout)
        started = perf_counter()
        try:
            client.ping()
        except redis.RedisError as exc:
            raise CheckFailed(f"PING failed: {type(exc).__name__}: {exc}") from exc
        finally:
            client.close()
        latency = round((perf_counter() - started) * 1000, 2)
        return Observation(values={"latency_ms": latency}, message=f"PONG in {latency} ms")
