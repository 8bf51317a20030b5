"""`controlplane status ...`: incidents, maintenance, subscribers and the static copy, from a shell.

The same functions as the API (/api/v1/incidents, /api/v1/maintenances, /api/v1/subscribers), so
the rules and the errors are the same; errors are one line and exit 1.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import click

from ..clikit import with_app
from ..timeutil import isoformat


@click.group()
def status():
    """The public status page: incidents, maintenance, subscribers, static export."""


@contextmanager
def _refusals():
    """What the domain refuses (IncidentError) becomes a one-line CLI error with exit status 1."""
    from .incidents import IncidentError

    try:
        yield
    except IncidentError as exc:
        raise click.ClickException(str(exc)) from None


def _components(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for value in values:
        component, sep, state = value.partition("=")
        if not sep or not component.strip() or not state.strip():
            raise click.BadParameter(f"{value!r} is not component=status (e.g. api=partial_outage)",
                                     param_hint="--component")
        out[component.strip()] = state.strip()
    return out


def _context(app):
    from .views import current_statuses

    statuses, _ = current_statuses()
    return app.extensions["controlplane.health"].config, {s.id: s.status for s in statuses}


def _author(author: str | None) -> str:
    import getpass

    return author or f"cli:{getpass.getuser()}"


def _show_incident(app, incident, as_json: bool) -> None:
    from .incidents import describe_for_operators

    document = describe_for_operators(incident, app.extensions["controlplane.settings"].status_page_id)
    if as_json:
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(f"incident {document['id']} ({document['status']}, impact {document['impact']}): {document['name']}")


COMPONENT_HELP = "component=status, e.g. delivery=partial_outage (repeatable)"


@status.group()
def incident():
    """Create, update and resolve incidents."""


@incident.command("create")
@click.option("--name", required=True)
@click.option("--body", required=True, help="The first update's text.")
@click.option("--status", "state", default="investigating", show_default=True,
              type=click.Choice(["investigating", "identified", "monitoring", "resolved"]))
@click.option("--impact", default="minor", show_default=True, type=click.Choice(["none", "minor", "major", "critical"]))
@click.option("--component", "components", multiple=True, help=COMPONENT_HELP)
@click.option("--author")
@click.option("--json", "as_json", is_flag=True)
@with_app
def incident_create(app, name, body, state, impact, components, author, as_json):
    from .incidents import create_incident

    config, current = _context(app)
    with _refusals():
        row = create_incident(config, current, name, state, body, impact, _components(components), _author(author))
    _show_incident(app, row, as_json)


def _update(app, incident_id, state, body, components, author, as_json) -> None:
    from .incidents import update_incident

    config, current = _context(app)
    with _refusals():
        row = update_incident(config, current, incident_id, state, body, _components(components), _author(author))
    _show_incident(app, row, as_json)


@incident.command("update")
@click.argument("incident_id", type=int)
@click.option("--status", "state", required=True, type=click.Choice(["investigating", "identified", "monitoring", "resolved"]))
@click.option("--body", required=True)
@click.option("--component", "components", multiple=True, help=COMPONENT_HELP)
@click.option("--author")
@click.option("--json", "as_json", is_flag=True)
@with_app
def incident_update(app, incident_id, state, body, components, author, as_json):
    _update(app, incident_id, state, body, components, author, as_json)


@incident.command("resolve")
@click.argument("incident_id", type=int)
@click.option("--body", default="This incident has been resolved.", show_default=True)
@click.option("--author")
@click.option("--json", "as_json", is_flag=True)
@with_app
def incident_resolve(app, incident_id, body, author, as_json):
    """Resolve: the components it declared go back to operational."""
    _update(app, incident_id, "resolved", body, (), author, as_json)


@incident.command("postmortem")
@click.argument("incident_id", type=int)
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The postmortem text ('-' is not accepted: keep a file you can review).")
@with_app
def incident_postmortem(app, incident_id, path):
    from .incidents import set_postmortem

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path} is not UTF-8 text: {exc}") from None
    with _refusals():
        row = set_postmortem(incident_id, text)
    click.echo(f"incident {row.id}: postmortem saved")


@incident.command("list")
@click.option("--all", "show_all", is_flag=True, help="Resolved ones too (default: unresolved only).")
@click.option("--json", "as_json", is_flag=True)
@with_app
def incident_list(app, show_all, as_json):
    from sqlalchemy import select

    from ..extensions import db
    from .incidents import describe_all
    from .models import Incident

    query = select(Incident).order_by(Incident.created_at.desc()).limit(100)
    if not show_all:
        query = query.where(Incident.status != "resolved")
    rows = describe_all(list(db.session.execute(query).scalars()), app.extensions["controlplane.settings"].status_page_id)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']:>5}  {row['status']:<13} {row['impact']:<8} {row['created_at']}  {row['name']}")
    if not rows:
        click.echo("no incidents" if show_all else "no unresolved incidents")


@status.group()
def maintenance():
    """Schedule and cancel maintenance windows."""


def _moment(value: str, name: str):
    from ..timeutil import parse_iso

    try:
        return parse_iso(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 time such as 2026-12-01T22:00Z",
                                 param_hint=name) from None


@maintenance.command("schedule")
@click.option("--name", required=True)
@click.option("--body", required=True)
@click.option("--component", "components", multiple=True, required=True, help="A component id (repeatable).")
@click.option("--start", required=True, help="ISO-8601, e.g. 2026-12-01T22:00Z")
@click.option("--end", required=True, help="ISO-8601, at most 7 days after the start")
@click.option("--author")
@with_app
def maintenance_schedule(app, name, body, components, start, end, author):
    from .maintenance import schedule

    with _refusals():
        row = schedule(app.extensions["controlplane.health"].config, name, body, list(components),
                       _moment(start, "--start"), _moment(end, "--end"), _author(author))
    click.echo(f"maintenance {row.id}: {isoformat(row.scheduled_for)} to {isoformat(row.scheduled_until)}")


@maintenance.command("cancel")
@click.argument("maintenance_id", type=int)
@with_app
def maintenance_cancel(app, maintenance_id):
    from .maintenance import cancel

    with _refusals():
        row = cancel(maintenance_id)
    click.echo(f"maintenance {row.id} cancelled")


@maintenance.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def maintenance_list(app, as_json):
    from ..timeutil import utcnow
    from .maintenance import describe, listing

    now = utcnow()
    rows = [describe(r, app.extensions["controlplane.health"].config,
                     app.extensions["controlplane.settings"].status_page_id, now) for r in listing("all", now)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        names = ",".join(c["id"] for c in row["components"])
        click.echo(f"{row['id']:>5}  {row['status']:<11} {row['scheduled_for']} .. {row['scheduled_until']}  "
                   f"{names}  {row['name']}")
    if not rows:
        click.echo("no maintenance windows")


@status.group()
def subscribers():
    """Email and webhook subscribers."""


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def subscribers_list(app, as_json):
    from .subscribers import describe, listing

    rows = [describe(r) for r in listing()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']:>5}  {row['kind']:<8} {row['state']:<13} {row['address']}")
    if not rows:
        click.echo("no subscribers")


@subscribers.command("add-email")
@click.argument("address")
@with_app
def subscribers_add_email(app, address):
    """Start a double opt-in: ADDRESS gets a confirmation link and nothing else until it confirms."""
    from .subscribers import subscribe_email

    with _refusals():
        subscription = subscribe_email(app.extensions["controlplane.settings"], address)
    row = subscription.subscriber
    if row.confirmed_at is not None:
        click.echo(f"subscriber {row.id}: {row.address} is already confirmed")
    elif subscription.confirmation_due:
        click.echo(f"subscriber {row.id}: confirmation mail queued for {row.address}")
    else:
        click.echo(f"subscriber {row.id}: a confirmation was sent less than 10 minutes ago; not sent again")


@subscribers.command("add-webhook")
@click.argument("url")
@click.option("--secret", help="Signing secret (16-128 characters); generated and printed when omitted.")
@with_app
def subscribers_add_webhook(app, url, secret):
    from .subscribers import add_webhook

    with _refusals():
        row = add_webhook(app.extensions["controlplane.settings"], url, secret)
    click.echo(f"subscriber {row.id}: {row.address}")
    if secret is None:
        click.echo(f"signing secret (shown once): {row.secret}")


@subscribers.command("remove")
@click.argument("subscriber_id", type=int)
@with_app
def subscribers_remove(app, subscriber_id):
    from .subscribers import remove

    with _refusals():
        row = remove(subscriber_id)
    click.echo(f"subscriber {row.id} ({row.address}) removed")


@status.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@with_app
def status_export(app, directory):
    """Write the page, incident pages, JSON, feeds and badges as static files into DIRECTORY."""
    from .export import ExportError, export

    try:
        files = export(app, directory)
    except (ExportError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(files)} files written to {directory} (open {directory / 'index.html'})")


@status.command("publish")
@with_app
def status_publish(app):
    """Push the static copy to the storage backend under STATUS_EXPORT_PREFIX now."""
    from ..backups.storage import StorageError
    from .export import ExportError, publish

    settings = app.extensions["controlplane.settings"]
    if not settings.status_export_prefix:
        raise click.ClickException("STATUS_EXPORT_PREFIX is not set: nowhere to publish to")
    try:
        uploaded = publish(app, settings)
    except (ExportError, StorageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{uploaded} changed files uploaded")
