"""`controlplane alerts ...`: validate the rules file, list alert states and their history."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..clikit import with_app


@click.group()
def alerts():
    """Alert rules and their state."""


@alerts.command("validate")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def alerts_validate(path):
    """Check a rules file (default: ALERT_RULES_FILE); errors name the rule and the field."""
    from ..settings import Settings
    from .rules import RulesError, load_rules

    target = path or Settings.from_env().alert_rules_file
    try:
        rules = load_rules(target)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{target}: {len(rules.rules)} rules valid")


@alerts.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_app
def alerts_list(app, as_json):
    """Every rule with its current state."""
    from sqlalchemy import select

    from ..extensions import db
    from .models import AlertState

    states = {s.rule: s for s in db.session.execute(select(AlertState)).scalars()}
    rows = []
    for rule in app.extensions["controlplane.alert_rules"].rules:
        state = states.get(rule.name)
        rows.append({"rule": rule.name, "severity": rule.severity, "state": state.state if state else "inactive",
                     "value": state.last_value if state else None,
                     "since": (state.fired_at or state.active_since).isoformat()
                     if state and state.state != "inactive" and (state.fired_at or state.active_since) else None})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'rule':<28} {'severity':<9} {'state':<9} {'value':>12}  since")
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:.4g}"
        click.echo(f"{row['rule']:<28} {row['severity']:<9} {row['state']:<9} {value:>12}  {row['since'] or ''}")


@alerts.command("history")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@with_app
def alerts_history(app, limit):
    """The newest state changes."""
    from sqlalchemy import select

    from ..extensions import db
    from .models import AlertEvent

    for event in db.session.execute(select(AlertEvent).order_by(AlertEvent.id.desc()).limit(limit)).scalars():
        click.echo(f"{event.at:%Y-%m-%d %H:%M:%S}  {event.rule:<28} {event.transition:<9} {event.detail or ''}")
