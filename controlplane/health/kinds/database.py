"""Database: a round trip, the pool's utilisation, and on PostgreSQL connections against max_connections."""
from time import perf_counter

from sqlalchemy import text

from . import CheckFailed, CheckKind, Metric, Observation


def pool_utilisation(pool) -> float | None:
    """Checked-out connections over everything the pool may open; None for pools without a limit."""
    if not hasattr(pool, "checkedout") or not hasattr(pool, "size"):
        return None
    capacity = pool.size() + max(getattr(pool, "_max_overflow", 0), 0)
    return pool.checkedout() / capacity if capacity else None


def server_connections(conn) -> tuple[int, int]:
    """(connections open, max_connections) on a PostgreSQL server."""
    in_use = conn.execute(text("SELECT count(*) FROM pg_stat_activity")).scalar_one()
    return in_use, int(conn.execute(text("SHOW max_connections")).scalar_one())


class DatabaseCheck(CheckKind):
    name = "database"
    metrics = {
        "latency_ms": Metric("ms"),
        "pool_ratio": Metric("ratio"),
        "connections_ratio": Metric("ratio"),
    }
    primary_metric = "latency_ms"

    def run(self, spec, ctx) -> Observation:
        engine = ctx.engine
        values = {}
        # Measured before we take a connection ourselves, so the check does not count itself.
        utilisation = pool_utilisation(engine.pool)
        if utilisation is not None:
            values["pool_ratio"] = round(utilisation, 4)
        started = perf_counter()
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                values["latency_ms"] = round((perf_counter() - started) * 1000, 2)
                message = f"round trip {values['latency_ms']} ms"
                if engine.dialect.name == "postgresql":
                    in_use, limit = server_connections(conn)
                    values["connections_ratio"] = round(in_use / limit, 4)
                    message += f"; {in_use} of {limit} connections in use"
        except Exception as exc:
            raise CheckFailed(f"cannot query the database: {type(exc).__name__}: {_first_line(exc)}") from exc
        if "pool_ratio" in values:
            message += f"; pool {values['pool_ratio']:.0%} used"
        return Observation(values=values, message=message)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
