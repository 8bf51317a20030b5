"""Backups of the service's own database: engines, sealing, storage, catalog, retention, drills.

    engines/     how a consistent copy is taken and loaded (SQLite online API, pg_dump)
    sealing.py   compression + chunked AES-256-GCM + SHA-256, streamed
    storage/     where sealed objects live (local directory, S3)
    manifests    each backup's sealed manifest in storage, so storage describes itself
    catalog      catalog and storage together: list, find by name, rebuild from storage
    operations   take, verify, restore          retention   what to delete
    drill        weekly restore into scratch    status      `backup status` and metrics
"""


def init_backups(app) -> None:
    from . import models  # noqa: F401  (tables for metadata and migrations)
    from .status import backup_families

    app.extensions.setdefault("controlplane.metric_sources", []).append(backup_families)
