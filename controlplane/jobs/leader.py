"""Leader election: the worker holding a PostgreSQL advisory lock runs the leader-only jobs.

The lock lives on a dedicated connection outside the pool. If the leader dies, PostgreSQL ends
its session and releases the lock, and the next poll of another worker takes it. On SQLite there
is only ever one process, so it always leads.
"""
from __future__ import annotations

import logging

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ..database import libpq_args

log = logging.getLogger(__name__)

# "mailgoat" as a big-endian integer, so other applications' advisory locks do not collide.
LOCK_KEY = int.from_bytes(b"mailgoat", "big") & 0x7FFF_FFFF_FFFF_FFFF


class LeaderElection:
    def __init__(self, database_url: str, connect_args: dict | None = None):
        """`connect_args`: from `database.service_connect_args()`, so that a lock connection whose
        server went silent raises within the answer deadline and counts as a lost lock."""
        self.is_sqlite = database_url.startswith("sqlite")
        self.is_leader = self.is_sqlite
        self._engine = None if self.is_sqlite else create_engine(
            database_url, poolclass=NullPool, connect_args=connect_args or libpq_args(5, "controlplane-leader")
        )
        self._conn = None

    def poll(self) -> bool:
        """Keep or try to take the lock; returns whether this process leads now."""
        if self.is_sqlite:
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except Exception as exc:
                log.error("lost the leader lock connection: %s", exc)
                self._drop_connection()
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            acquired = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar_one()
        except Exception as exc:
            log.warning("cannot try the leader lock: %s", exc)
            return self._set(False)
        if acquired:
            self._conn = conn
            log.info("became leader")
            return self._set(True)
        conn.close()
        return self._set(False)

    def _set(self, leading: bool) -> bool:
        self.is_leader = leading
        return leading

    def _drop_connection(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass
        self._conn = None
        self.is_leader = False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            except Exception:
                pass
            self._drop_connection()
        if self._engine is not None:
            self._engine.dispose()
