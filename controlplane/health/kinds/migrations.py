"""Migrations: the database schema is at the revision this code expects."""
from functools import lru_cache

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from . import CheckFailed, CheckKind, Metric, Observation


@lru_cache(maxsize=8)
def _scripts(migrations_dir: str) -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", migrations_dir)
    return ScriptDirectory.from_config(config)


def code_heads(migrations_dir: str) -> frozenset[str]:
    return frozenset(_scripts(migrations_dir).get_heads())


def database_heads(engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


class MigrationsCheck(CheckKind):
    name = "migrations"
    metrics = {"pending": Metric("revisions")}
    primary_metric = "pending"

    def run(self, spec, ctx) -> Observation:
        expected = code_heads(str(ctx.settings.migrations_dir))
        try:
            current = database_heads(ctx.engine)
        except Exception as exc:
            raise CheckFailed(f"cannot read the schema revision: {type(exc).__name__}") from exc
        if current == expected:
            return Observation(values={"pending": 0}, message=f"at head {', '.join(sorted(expected))}")
        if not current:
            raise CheckFailed("the database has no schema yet: run `controlplane db upgrade`")
        known = _known_revisions(str(ctx.settings.migrations_dir))
        if current - known:
            # Another release migrated ahead of us; migrations add first and drop later, so this
            # code still works, but the deploy is mid-way.
            return Observation(values={"pending": 0}, at_most="degraded",
                               message=f"database at {', '.join(sorted(current))}, newer than this code")
        raise CheckFailed(
            f"database at {', '.join(sorted(current))}, code expects {', '.join(sorted(expected))}: "
            "run `controlplane db upgrade`"
        )


def _known_revisions(migrations_dir: str) -> frozenset[str]:
    return frozenset(rev.revision for rev in _scripts(migrations_dir).walk_revisions())
