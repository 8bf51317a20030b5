"""`controlplane backup ...`: thin commands over operations, retention, drill and status."""
from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path

import click

from ..clikit import with_app
from ..timeutil import isoformat
from .progress import human_bytes


def backup_errors(func):
    """BackupError (and a refused engine or storage) end the command with its message, exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .engines import EngineError
        from .operations import BackupError
        from .storage import StorageError

        try:
            return func(*args, **kwargs)
        except (BackupError, EngineError, StorageError) as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def _settings(app):
    return app.extensions["controlplane.settings"]


def _describe(row) -> dict:
    return {
        "id": row.id, "name": row.name, "kind": row.kind, "engine": row.engine, "status": row.status,
        "started_at": isoformat(row.started_at), "finished_at": isoformat(row.finished_at),
        "size_bytes": row.size_bytes, "plain_bytes": row.plain_bytes, "storage": row.storage,
        "location": row.location, "key_id": row.key_id, "compression": row.compression,
        "server_version": row.server_version, "lsn": row.lsn_end, "timeline": row.timeline,
        "parent_id": row.parent_id, "pinned": row.pinned, "error": row.error,
        "verified_at": isoformat(row.verified_at),
        "verify_ok": row.verify_ok, "verify_error": row.verify_error,
        "artefacts": row.artefact_list, "tables": row.tables, "full_copy": row.full_copy,
        "in_catalog": row.in_catalog,
    }


@click.group()
def backup():
    """Backups of this service's database: run, list, verify, restore, prune."""


@backup.command("run")
@click.option("--kind", type=click.Choice(["full", "manual"]), default="full", show_default=True,
              help="Both are complete copies; `manual` only labels one taken by hand.")
@with_app
@backup_errors
def backup_run(app, kind):
    """Take a full backup now."""
    from .operations import take_backup

    row = take_backup(_settings(app), kind, progress=True)
    seconds = (row.finished_at - row.started_at).total_seconds()
    click.echo(f"backup {row.id} ({row.name}) succeeded: {human_bytes(row.size_bytes)} stored "
               f"({human_bytes(row.plain_bytes)} before compression) in {seconds:.1f} s, {row.location}")


@backup.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@with_app
@backup_errors
def backup_list(app, as_json, limit):
    """What the catalog and storage hold, newest first (storage's own manifests are read too)."""
    from .catalog import storage_view

    view = storage_view(_settings(app))
    rows = view.rows[:limit]
    if as_json:
        click.echo(json.dumps([{**_describe(r), "in_storage": r.name not in view.not_in_storage} for r in rows],
                              indent=2))
        _warn_about(view)
        return
    if not view.catalog_readable:
        click.echo("this database has no backup catalog: listing storage alone", err=True)
    if not rows:
        click.echo("no backups yet: `controlplane backup run` takes one")
    else:
        _print_rows(rows, view.not_in_storage)
    _warn_about(view)


def _print_rows(rows, not_in_storage: set[str]) -> None:
    width = max(len(r.name) for r in rows)
    click.echo(f"{'id':>5}  {'name':<{width}} {'started (UTC)':<19}  {'kind':<13} {'engine':<11} {'status':<9} "
               f"{'size':>10}  {'verified':<8} {'pinned':<6} where")
    for r in rows:
        verified = "-" if r.verify_ok is None else ("ok" if r.verify_ok else "FAILED")
        where = "storage only (not in the catalog)" if not r.in_catalog else (
            "catalog only (no manifest in storage)" if r.name in not_in_storage else "catalog, storage")
        click.echo(f"{r.id if r.in_catalog else '-':>5}  {r.name:<{width}} {r.started_at:%Y-%m-%d %H:%M:%S}  {r.kind:<13} "
                   f"{r.engine:<11} {r.status:<9} {human_bytes(r.size_bytes or 0):>10}  {verified:<8} "
                   f"{'yes' if r.pinned else '':<6} {where}")


def _warn_about(view) -> None:
    for name, why in view.unreadable:
        click.echo(f"cannot read the manifest of {name}: {why}", err=True)
    for name in view.legacy:
        click.echo(f"{name}: only a plaintext manifest.json (from an unreleased build): not read", err=True)


@backup.command("show")
@click.argument("backup_id")
@click.option("--json", "as_json", is_flag=True)
@with_app
@backup_errors
def backup_show(app, backup_id, as_json):
    """Everything the catalog (or, for a name, storage's manifest) knows about one backup."""
    from .catalog import locate_backup

    described = _describe(locate_backup(_settings(app), backup_id))
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for field in ("id", "name", "in_catalog", "kind", "full_copy", "engine", "status", "started_at", "finished_at",
                  "storage", "location", "key_id", "compression", "server_version", "lsn", "parent_id", "pinned",
                  "verified_at", "verify_ok", "verify_error", "error"):
        if described[field] not in (None, ""):
            click.echo(f"{field:<16} {described[field]}")
    click.echo(f"{'size':<16} {human_bytes(described['size_bytes'] or 0)} stored, "
               f"{human_bytes(described['plain_bytes'] or 0)} plain")
    for artefact in described["artefacts"]:
        click.echo(f"{'artefact':<16} {artefact['name']}: {human_bytes(artefact['sealed_bytes'])}, "
                   f"sha256 plain {artefact['plain_sha256'][:16]}…, sealed {artefact['sealed_sha256'][:16]}…")
    if described["tables"]:
        click.echo(f"{'tables':<16} {len(described['tables'])} "
                   f"({sum(t['rows'] for t in described['tables'].values())} rows, checksums recorded)")


@backup.command("verify")
@click.argument("backup_id")
@with_app
@backup_errors
def backup_verify(app, backup_id):
    """Read a backup back from storage and check every frame and checksum."""
    from .catalog import locate_backup
    from .operations import verify_backup

    row = locate_backup(_settings(app), backup_id)
    verify_backup(_settings(app), row, progress=True)
    click.echo(f"backup {_label(row)} verified: every frame authenticated, both SHA-256 sums match")


def _label(row) -> str:
    return f"{row.id} ({row.name})" if row.in_catalog else f"{row.name} (from storage's manifest)"


@backup.command("restore")
@click.argument("backup_id")
@click.option("--target-url", help="Database to restore into (created if missing; must be empty).")
@click.option("--in-place", is_flag=True, help="Replace the live database (DATABASE_URL). Stop the service first.")
@click.option("--target-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Physical backups: a new data directory to recover into.")
@click.option("--to-time", help="Physical backups: recover up to this moment (ISO-8601, UTC unless an offset is given).")
@click.option("--no-start", is_flag=True, help="Physical backups: prepare the directory but do not start it.")
@click.option("--with-globals", is_flag=True, help="Also apply roles from pg_dumpall (a new server).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_app
@backup_errors
def backup_restore(app, backup_id, target_url, in_place, target_dir, to_time, no_start, with_globals, yes):
    """Restore a backup; verified in full before anything is written to the target."""
    from ..settings import redact_url
    from .catalog import locate_backup
    from .operations import restore_backup

    settings = _settings(app)
    row = locate_backup(settings, backup_id)
    moment = _parse_time(to_time) if to_time else None
    if row.engine == "pg_physical":
        target = str(target_dir) if target_dir else None
    else:
        target = redact_url(settings.database_url) if in_place else (redact_url(target_url) if target_url else None)
    if target and not yes:
        warning = " THIS REPLACES THE LIVE DATABASE." if in_place else ""
        click.confirm(f"Restore backup {_label(row)}, {row.finished_at:%Y-%m-%d %H:%M} UTC, into {target}?"
                      f"{warning}", abort=True)
    report = restore_backup(settings, row, target_url, in_place=in_place, progress=True, with_globals=with_globals,
                            target_dir=target_dir, to_time=moment, start=not no_start)
    click.echo(f"restored {row.name} into {report.target} in {report.seconds:.1f} s (the RTO achieved; "
               f"{report.read_seconds:.1f} s reading and verifying, the rest loading)")
    if report.url:
        click.echo(f"the recovered server is running: {report.url} (stop it with pg_ctl -D {report.target} stop)")
    if report.problems:
        for problem in report.problems:
            click.echo(f"- {problem}", err=True)
        raise click.ClickException("the restored data differs from what was recorded at backup time")
    if report.tables:
        click.echo(f"{report.tables} tables match the row counts and checksums recorded at backup time")


def _parse_time(text: str) -> datetime:
    from ..timeutil import parse_iso

    try:
        return parse_iso(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 time (e.g. 2026-11-30T10:15:00Z)",
                                 param_hint="--to-time") from None


@backup.group("catalog")
def backup_catalog():
    """The catalog of backups, kept in the database it backs up."""


@backup_catalog.command("rebuild")
@with_app
@backup_errors
def backup_catalog_rebuild(app):
    """Import what storage holds into the catalog (after a restore, or into a new database)."""
    from .catalog import rebuild_catalog

    report = rebuild_catalog(_settings(app))
    click.echo(f"imported {len(report.imported)} backup(s), brought {len(report.repaired)} up to date, "
               f"{report.unchanged} already catalogued"
               + "".join(f"\n  imported {name}" for name in report.imported)
               + "".join(f"\n  up to date {name}" for name in report.repaired))
    for name in report.not_in_storage:
        click.echo(f"{name}: in the catalog, but storage has no manifest for it (kept)", err=True)
    for name in report.legacy:
        click.echo(f"{name}: only a plaintext manifest.json (from an unreleased build): not imported", err=True)
    for name, why in report.unreadable:
        click.echo(f"{name}: not imported, its manifest cannot be read: {why}", err=True)
    if report.unreadable:
        raise click.ClickException(f"{len(report.unreadable)} backup(s) in storage could not be imported (above)")


@backup.command("archive-wal")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@with_app
@backup_errors
def backup_archive_wal(app, path):
    """PostgreSQL's archive_command: seal and store one WAL file (archive_command = '... archive-wal %p')."""
    from .operations import archive_wal

    if not path.is_file():
        raise click.ClickException(f"archive-wal: {path} is not a file")
    archive_wal(_settings(app), path)


@backup.command("prune")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@with_app
@backup_errors
def backup_prune(app, dry_run):
    """Delete backups past BACKUP_RETENTION_DAYS (pinned, pre-migration and needed ones are kept)."""
    from .retention import prune

    doomed = prune(_settings(app), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {len(doomed)} backup(s)" + "".join(f"\n  {r.id} {r.name}" for r in doomed))


def _set_pinned(app, backup_id: str, pinned: bool) -> None:
    from ..extensions import db
    from .operations import find_backup

    row = find_backup(backup_id)
    row.pinned = pinned
    db.session.commit()
    click.echo(f"backup {row.id} ({row.name}) {'pinned: retention keeps it' if pinned else 'unpinned'}")


@backup.command("pin")
@click.argument("backup_id")
@with_app
@backup_errors
def backup_pin(app, backup_id):
    """Keep a backup past retention until unpinned."""
    _set_pinned(app, backup_id, True)


@backup.command("unpin")
@click.argument("backup_id")
@with_app
@backup_errors
def backup_unpin(app, backup_id):
    """Let retention delete a backup again."""
    _set_pinned(app, backup_id, False)


@backup.command("drill")
@with_app
@backup_errors
def backup_drill(app):
    """Restore the newest backup into a scratch database and compare every table."""
    from .drill import raise_if_failed, run_drill

    drill = run_drill(_settings(app))
    raise_if_failed(drill)
    click.echo(f"restore drill passed in {drill.rto_seconds:.1f} s: {drill.detail}")


@backup.command("status")
@click.option("--json", "as_json", is_flag=True)
@with_app
def backup_status_command(app, as_json):
    """What the current setup achieves: last full, RPO now, expected RTO, engine."""
    from .status import backup_status

    status = backup_status(_settings(app))
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return

    def age(entry):
        if not entry:
            return "never"
        return f"{entry['finished_at']} ({_duration(entry['age_seconds'])} ago, {human_bytes(entry['size_bytes'] or 0)})"

    click.echo(f"engine           {status['engine']}")
    click.echo(f"storage          {status['storage']}")
    click.echo(f"schedule         {status['schedule']}")
    click.echo(f"last full        {age(status['last_full'])}")
    click.echo(f"last incremental {age(status['last_incremental'])}")
    if status["last_wal"]:
        click.echo(f"last WAL sealed  {age(status['last_wal'])}")
    rpo = status["current_rpo_seconds"]
    click.echo(f"RPO now          {_duration(rpo) if rpo is not None else 'unbounded (no backup yet)'}"
               f" (target {_duration(status['target_rpo_seconds'])})")
    rto = status["expected_rto_seconds"]
    click.echo(f"expected RTO     {_duration(rto) + ' (last drill)' if rto is not None else 'unknown: run `controlplane backup drill`'}")
    if status["last_drill"]:
        drill = status["last_drill"]
        click.echo(f"last drill       {drill['finished_at']} {'passed' if drill['ok'] else 'FAILED: ' + (drill['detail'] or '')}")
    if status["last_failure"]:
        click.echo(f"last failure     {status['last_failure']['finished_at']}: {status['last_failure']['error']}",
                   err=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
