"""The backup `controlplane db upgrade` takes before migrating a PostgreSQL database."""
from __future__ import annotations

import logging

from sqlalchemy import inspect

from ..extensions import db

log = logging.getLogger("controlplane.backups")


def backup_before_migrating(settings, revision: str, skip: bool = False):
    """The pre-migration backup, or None when there is nothing to protect (or it was skipped)."""
    from ..schema import code_heads, database_heads
    from .operations import take_backup

    if settings.is_sqlite:
        return None  # the plan asks for it on PostgreSQL; `backup run` covers a SQLite file
    current = database_heads(db.engine)
    if not current:
        return None  # an empty database: nothing to lose
    if revision == "head" and current == code_heads(str(settings.migrations_dir)):
        return None  # nothing to apply
    if skip:
        log.warning("pre-migration backup skipped (--skip-backup)",
                    extra={"from_revision": sorted(current), "to_revision": revision})
        return None
    if "backups" not in inspect(db.engine).get_table_names():
        log.warning("the backup catalog does not exist before this migration creates it: "
                    "no pre-migration backup this once", extra={"from_revision": sorted(current)})
        return None
    log.info("taking the pre-migration backup", extra={"from_revision": sorted(current), "to_revision": revision})
    return take_backup(settings, "pre-migration")
