"""Connection pool gauges, updated on pool events rather than polled."""
from sqlalchemy import event

from .metrics import DB_POOL_CHECKED_OUT, DB_POOL_IDLE, DB_POOL_MAX, DB_POOL_OVERFLOW, DB_POOL_SIZE


def watch_pool(engine) -> None:
    pool = engine.pool
    if not hasattr(pool, "checkedout"):
        return  # NullPool/StaticPool: nothing to report
    DB_POOL_SIZE.inc(pool.size())
    DB_POOL_MAX.inc(pool.size() + max(getattr(pool, "_max_overflow", 0), 0))
    reported = {"out": 0, "idle": 0, "overflow": 0}

    def update(*_):
        # Gauges are shared by every engine in the process (tests build many), so each engine
        # adds only the change in its own numbers.
        now = {"out": pool.checkedout(), "idle": pool.checkedin(), "overflow": max(pool.overflow(), 0)}
        DB_POOL_CHECKED_OUT.inc(now["out"] - reported["out"])
        DB_POOL_IDLE.inc(now["idle"] - reported["idle"])
        DB_POOL_OVERFLOW.inc(now["overflow"] - reported["overflow"])
        reported.update(now)

    for name in ("connect", "checkout", "checkin", "close", "detach", "close_detached"):
        event.listen(pool, name, update)
