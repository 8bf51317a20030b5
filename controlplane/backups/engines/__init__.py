"""Backup engines. Contract (`Engine`):

    dump() -> Dump                 a consistent copy of the database as named artefacts
    Dump.artefacts                 [(name, blocks)] to be read in order, each exactly once
    Dump.finish() -> dict          after reading: server version, per-table checksums, ...;
                                   raises EngineError if the tool failed
    check_target(url, replace, manifest)  raises EngineError if restoring there is refused (not empty,
                                   older server), before anything is written
    restore(files, url, replace)   load verified artefact files (name -> Path) into `url`
    checksums(url) -> dict         per-table rows and checksums of a database

Registry: ENGINES, keyed by BACKUP_ENGINE ("auto" picks by DATABASE_URL).
"""
from __future__ import annotations


class EngineError(Exception):
    pass


def engine_for(settings, name: str | None = None):
    from .pg_logical import PostgresLogical
    from .pg_physical import PostgresPhysical
    from .sqlite import SqliteOnline

    name = name or settings.backup_engine
    if name == "auto":
        name = "sqlite" if settings.database_url.startswith("sqlite") else "pg_logical"
    engines = {"sqlite": SqliteOnline, "pg_logical": PostgresLogical, "pg_physical": PostgresPhysical}
    if name not in engines:
        raise EngineError(f"unknown backup engine {name!r} (known: {', '.join(sorted(engines))})")
    engine = engines[name](settings.database_url)
    if name == "sqlite" and not settings.database_url.startswith("sqlite"):
        raise EngineError("the sqlite engine needs a sqlite:/// DATABASE_URL")
    if name.startswith("pg_") and not settings.database_url.startswith("postgresql"):
        raise EngineError(f"the {name} engine needs a PostgreSQL DATABASE_URL")
    return engine


ENGINES = ("auto", "sqlite", "pg_logical", "pg_physical")
