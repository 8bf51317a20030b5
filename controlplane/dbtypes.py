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


def begin_as_writer() -> None:
    """Start the session's transaction holding the right to write.

    On SQLite a transaction that has read cannot start writing once another connection has
    committed since its first read: SQLite refuses at once ("database is locked",
    SQLITE_BUSY_SNAPSHOT) without waiting out the busy timeout. A unit of work that reads, then
    writes, in one transaction with savepoints (an alert evaluation pass) therefore takes the
    write lock first (BEGIN IMMEDIATE) and waits its turn behind other writers instead. PostgreSQL
    needs nothing: its transactions write whenever they like."""
    from .extensions import db

    if db.engine.dialect.name != "sqlite":
        return
    connection = db.session.connection()
    if not connection.connection.dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
