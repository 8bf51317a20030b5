"""`controlplane`: thin command groups that call into the domains.

Configuration errors end the command with the message and exit status 2, never a traceback.
"""
from __future__ import annotations

import json
import sys

import click

from .alerting.cli import alerts
from .backups.cli import backup
from .clikit import ConfigErrorExit, build_app, with_app
from .health.config import ChecksConfigError
from .settings import Settings, SettingsError
from .status.cli import status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mailgoat-controlplane", prog_name="controlplane")
def main():
    """MailGoat control plane: API gateway, health, alerting, backups and status page."""


# Domains own their command groups.
main.add_command(alerts)
main.add_command(backup)
main.add_command(status)


# ---------------------------------------------------------------- processes


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
def run(host, port):
    """Web and worker in one process: SQLite, local backups, no servers needed."""
    from .devserver import serve

    serve(build_app(), host, port)


@main.command()
def worker():
    """The scheduler process: health refresh, retention and every background job."""
    from .jobs import Worker

    Worker(build_app()).run_until_signalled()


# ---------------------------------------------------------------- database


@main.group()
def db():
    """Schema migrations (Alembic via Flask-Migrate)."""


@db.command()
@click.option("--revision", default="head", show_default=True)
@click.option("--skip-backup", is_flag=True, help="Do not take the pre-migration backup (the skip is logged).")
@with_app
def upgrade(app, revision, skip_backup):
    """Apply migrations up to REVISION, after a pre-migration backup on PostgreSQL."""
    from .alerting.deployments import record_migration
    from .backups.premigration import backup_before_migrating
    from .schema import upgrade_database

    settings = app.extensions["controlplane.settings"]
    taken = backup_before_migrating(settings, revision, skip=skip_backup)
    if taken is not None:
        click.echo(f"pre-migration backup {taken.id} ({taken.name}) taken")
    try:
        upgrade_database(revision)
    except Exception as exc:
        record_migration(settings, "failed", revision, f"{type(exc).__name__}: {exc}")
        raise
    record_migration(settings, "succeeded", current_heads_text())
    click.echo(f"database at {current_heads_text()}")


@db.command()
@click.option("--revision", default="-1", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_app
def downgrade(app, revision, yes):
    """Revert migrations down to REVISION (default: one step)."""
    import flask_migrate

    if not yes:
        click.confirm(f"Downgrade the database to {revision}? Data in dropped tables is lost", abort=True)
    flask_migrate.downgrade(revision=revision)
    click.echo(f"database at {current_heads_text()}")


@db.command()
@with_app
def current(app):
    """Print the database's revision."""
    click.echo(current_heads_text())


@db.command()
@with_app
def check(app):
    """Fail when the models and the migrations disagree, or the database is not at head."""
    from .schema import schema_problems

    problems = schema_problems()
    if problems:
        for problem in problems:
            click.echo(f"- {problem}", err=True)
        raise click.ClickException("schema check failed")
    click.echo("models, migrations and database agree")


@db.command()
@click.option("-m", "--message", required=True, help="What the migration does.")
@with_app
def revision(app, message):
    """Generate a migration from the difference between the models and the database."""
    import flask_migrate

    flask_migrate.migrate(message=message)


def current_heads_text() -> str:
    from .schema import database_revision

    return database_revision() or "(empty: no migrations applied)"


# ---------------------------------------------------------------- API keys


@main.group()
def keys():
    """API keys for the MailGoat API (stored only as HMACs)."""


def _key_call(func, *args, **kwargs):
    from .gateway.keys import KeyError_

    try:
        return func(*args, **kwargs)
    except KeyError_ as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None


@keys.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option("--scopes", default="send", show_default=True, help="Comma-separated: send, read, admin.")
@click.option("--from-domain", "from_domains", multiple=True, help="Allowed sender domain (repeatable).")
@click.option("--default-sender", help="From address used when a send has none.")
@click.option("--allow-ip", "allowed_ips", multiple=True, help="Allowed client network, CIDR (repeatable).")
@click.option("--rate-burst", type=int, help="Sends per minute (default: RATE_LIMIT_BURST_PER_MINUTE).")
@click.option("--rate-hour", type=int, help="Sends per hour (default: RATE_LIMIT_PER_HOUR).")
@click.option("--rate-day", type=int, help="Sends per day (default: RATE_LIMIT_PER_DAY).")
@click.option("--monthly-quota", type=int, help="Messages per calendar month (default: MONTHLY_QUOTA).")
@with_app
def keys_create(app, name, scopes, from_domains, default_sender, allowed_ips, rate_burst, rate_hour, rate_day,
                monthly_quota):
    """Create a key and print it once."""
    from .gateway.keys import create_key

    new = _key_call(create_key, app.extensions["controlplane.settings"], name=name, scopes=scopes,
                    allowed_from_domains=list(from_domains), default_sender=default_sender,
                    allowed_ips=list(allowed_ips), monthly_quota=monthly_quota, actor="cli",
                    rate_limits={"burst": rate_burst, "hour": rate_hour, "today": rate_day})
    click.echo(f"id {new.row.id}  name {new.row.name}  scopes {new.row.scopes}")
    click.echo(f"key {new.key}")
    click.echo("This is the only time the key is shown; store it now.", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def keys_list(app, as_json):
    """List keys (never the keys themselves)."""
    from sqlalchemy import select

    from .extensions import db as database
    from .gateway.keys import describe_key
    from .gateway.models import ApiKey

    rows = [describe_key(r) for r in database.session.execute(select(ApiKey).order_by(ApiKey.id)).scalars()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'id':>4}  {'prefix':<12} {'name':<24} {'scopes':<18} {'last used':<22} state")
    for r in rows:
        state = "revoked" if r["revoked_at"] else "active"
        click.echo(f"{r['id']:>4}  {r['prefix']:<12} {r['name'][:24]:<24} {','.join(r['scopes']):<18} "
                   f"{(r['last_used_at'] or 'never')[:22]:<22} {state}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@with_app
def keys_revoke(app, key_id):
    """Revoke a key; it stops working on the next request."""
    from .gateway.keys import revoke_key

    row = _key_call(revoke_key, key_id, actor="cli")
    click.echo(f"revoked key {row.id} ({row.name})")


@keys.command("rotate")
@click.argument("key_id", type=int)
@with_app
def keys_rotate(app, key_id):
    """Replace a key with a new one with the same settings; the old one is revoked."""
    from .gateway.keys import rotate_key

    new = _key_call(rotate_key, app.extensions["controlplane.settings"], key_id, actor="cli")
    click.echo(f"key {key_id} revoked; new key id {new.row.id}")
    click.echo(f"key {new.key}")


@keys.command("salt-status")
@with_app
def keys_salt_status(app):
    """How many active keys are still hashed under a previous API_KEY_SALT."""
    from .gateway.keys import keys_on_previous_salt

    remaining = keys_on_previous_salt(app.extensions["controlplane.settings"])
    click.echo(f"{remaining} active key(s) still on a previous salt (re-hashed on their next use)")


# ---------------------------------------------------------------- users


@main.group()
def users():
    """People who sign in with a password and act with a JWT."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), default="viewer", show_default=True)
@click.password_option(envvar="CONTROLPLANE_USER_PASSWORD", help="Asked for when not given.")
@with_app
def users_create(app, email, role, password):
    """Create a user."""
    from .gateway.users import create_user

    user = _key_call(create_user, email, password, role, actor="cli")
    click.echo(f"user {user.id} {user.email} ({user.role}) created")


# ---------------------------------------------------------------- checks


@main.group()
def checks():
    """Health checks declared in checks/checks.yaml."""


@checks.command("validate")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
def checks_validate(path):
    """Validate a checks file (default: the configured one)."""
    from pathlib import Path

    from .health.config import load_checks
    from .settings import PROJECT_ROOT

    target = Path(path) if path else PROJECT_ROOT / "checks" / "checks.yaml"
    try:
        config = load_checks(target)
    except ChecksConfigError as exc:
        raise ConfigErrorExit(str(exc)) from None
    click.echo(f"{target}: {len(config.checks)} checks, {len(config.components)} components: valid")


@checks.command("run")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@with_app
def checks_run(app, as_json):
    """Run every check once, now, and print the results (stored as a manual run: a diagnostic does
    not count toward uptime, /health or the status page)."""
    from .health.models import MANUAL
    from .timeutil import isoformat

    health = app.extensions["controlplane.health"]
    runner = health.make_runner(app, f"{app.extensions['controlplane.settings'].instance_id}:cli", MANUAL)
    try:
        outcomes = runner.run(force=True)
    finally:
        runner.shutdown()
    if as_json:
        click.echo(json.dumps([{**o.__dict__, "checked_at": isoformat(o.checked_at)} for o in outcomes], indent=2))
    else:
        for o in outcomes:
            value = "" if o.observed_value is None else f"{o.observed_value:g} {o.observed_unit or ''}"
            click.echo(f"{o.name:<12} {o.status:<12} {value:<14} {o.duration_ms:>8.1f} ms  {o.message}")
    click.echo("(manual run: stored for the record; uptime, /health and the status page count only the "
               "worker's scheduled runs)", err=True)
    hard_failed = [o for o in outcomes if o.status == "unhealthy"
                   and next(s for s in health.specs if s.name == o.name).hard]
    sys.exit(1 if hard_failed else 0)


# ---------------------------------------------------------------- deploy


@main.command()
@click.option("--url", required=True, help="Base URL of the deployed service, e.g. https://api.mailgoat.ai")
@click.option("--api-key", envvar="MAILGOAT_API_KEY", help="Also make an authenticated API round trip.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds per request.")
def smoke(url, api_key, timeout):
    """Post-deploy smoke test: health, readiness, metrics, and an API round trip with a key."""
    from .smoke import run_smoke

    ok = run_smoke(url, api_key, timeout, echo=click.echo)
    sys.exit(0 if ok else 1)


@main.command("config")
def show_config():
    """Print the effective settings (secrets shown only as set/unset)."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise ConfigErrorExit(f"configuration error: {exc}") from None
    click.echo(json.dumps(settings.describe(), indent=2))


if __name__ == "__main__":
    main()
