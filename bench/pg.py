"""Throwaway PostgreSQL databases for the benchmarks (CONTROLPLANE_BENCH_POSTGRES_URL, default the
local server)."""
from __future__ import annotations

import os
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

ADMIN_URL = os.environ.get("CONTROLPLANE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_for(name: str) -> str:
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _admin():
    return create_engine(ADMIN_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def create_database(name: str) -> None:
    with _admin().connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))


def drop_database(name: str) -> None:
    with _admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_database(prefix: str = "cp_bench") -> tuple[str, callable]:
    """A new, empty database's URL, and how to drop it."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    create_database(name)
    return url_for(name), lambda: drop_database(name)
