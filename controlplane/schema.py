"""The database schema against the code: migrate, report the revision, find drift."""
from __future__ import annotations

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import current_app

from .extensions import db
from .health.kinds.migrations import code_heads, database_heads


def upgrade_database(revision: str = "head") -> None:
    flask_migrate.upgrade(revision=revision)


def database_revision() -> str | None:
    heads = database_heads(db.engine)
    return ", ".join(sorted(heads)) or None


def schema_problems() -> list[str]:
    """Differences between models, migrations and the database; empty when all agree."""
    settings = current_app.extensions["controlplane.settings"]
    problems = []
    expected = code_heads(str(settings.migrations_dir))
    current = database_heads(db.engine)
    if current != expected:
        problems.append(
            f"database at {', '.join(sorted(current)) or 'nothing'}, migrations end at {', '.join(sorted(expected))}"
        )
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        for diff in compare_metadata(context, db.metadata):
            problems.append(f"models differ from the database: {diff}")
    return problems
