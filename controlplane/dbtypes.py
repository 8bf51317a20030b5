"""Column types that behave the same on SQLite and PostgreSQL."""
from sqlalchemy import BigInteger, DateTime, Integer

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
UTCDateTime = DateTime(timezone=True)


def add_counts(model, key: dict, counts: dict) -> None:
    """Insert a counter row, or add `counts` to the one already at `key` (an upsert, so two
    processes adding to the same row at once both count)."""
    from .extensions import db

    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(model).values(**key, **counts)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: getattr(model, name) + getattr(statement.excluded, name) for name in counts}))
