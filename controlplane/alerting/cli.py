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
    """Every rule with its current state (`error` with the reason while it cannot be evaluated)."""
    from .engine import current_states

    rows = current_states(app.extensions["controlplane.alert_rules"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'rule':<28} {'severity':<9} {'state':<9} {'value':>12}  since")
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:.4g}"
        click.echo(f"{row['rule']:<28} {row['severity']:<9} {row['state']:<9} {value:>12}  {row['since'] or ''}")
        if row["error"]:
            click.echo(f"{'':<28} cannot be evaluated: {row['error']}")


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


@alerts.command("test")
@click.argument("rule_name")
@with_app
def alerts_test(app, rule_name):
    """Check every alert channel, then send a test page for RULE to its PagerDuty route now
    (resolve it in PagerDuty). A channel that cannot work is one line and exit status 1."""
    from ..timeutil import utcnow
    from .channels import describe_problems, probed_channel_problems, route_for
    from .pagerduty import trigger_payload

    settings = app.extensions["controlplane.settings"]
    rules = app.extensions["controlplane.alert_rules"]
    rule = rules.get(rule_name)
    if rule is None:
        raise click.ClickException(f"no rule {rule_name!r} in {settings.alert_rules_file}")
    problems = probed_channel_problems(settings, rules)
    if problems:
        raise click.ClickException(describe_problems(problems))
    route = route_for(rule, settings)
    if route is None:
        raise click.ClickException("PagerDuty is not configured: set PAGERDUTY_ROUTING_KEY")
    now = utcnow()
    payload = trigger_payload(rule, None, now, settings, settings.otel_service_name)
    payload["summary"] = f"[TEST] {rule.name}: a test page from controlplane alerts test"
    outcome = app.extensions["controlplane.pagerduty"].send(
        settings.pagerduty_routes[route], "trigger", f"mailgoat-cp/test/{rule.name}/{int(now.timestamp())}", payload)
    if not outcome.ok:
        raise click.ClickException(f"the test page was not accepted: {outcome.error}")
    click.echo(f"test page for {rule.name} sent to route {route!r} ({rule.severity})")


@alerts.group("silence")
def silence():
    """Silences (label matchers, a time range, who and why)."""


@silence.command("create")
@click.option("--match", "matchers", multiple=True, help="label=value (alertname=RULE for one rule); repeatable")
@click.option("--duration", default="1h", show_default=True, help="30m, 2h, 1d (at most 30 days)")
@click.option("--author", required=True)
@click.option("--comment", required=True)
@click.option("--maintenance", is_flag=True, help="A maintenance window: silence every alert (no matchers).")
@with_app
def silence_create(app, matchers, duration, author, comment, maintenance):
    from datetime import timedelta

    from .rules import RulesError, parse_duration
    from .silences import SilenceError, create_silence

    parsed = {}
    for matcher in matchers:
        name, sep, value = matcher.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{matcher!r} is not label=value", param_hint="--match")
        parsed[name.strip()] = value.strip()
    try:
        row = create_silence(parsed, None, None, author, comment, kind="maintenance" if maintenance else "silence",
                             duration=timedelta(seconds=parse_duration(duration, "--duration")))
    except (SilenceError, RulesError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"silence {row.id} until {row.ends_at:%Y-%m-%d %H:%M} UTC")


@silence.command("list")
@with_app
def silence_list(app):
    from sqlalchemy import select

    from ..extensions import db
    from .models import Silence
    from .silences import describe

    for row in db.session.execute(select(Silence).order_by(Silence.id.desc()).limit(50)).scalars():
        item = describe(row)
        click.echo(f"{item['id']:>4} {'active ' if item['active'] else 'ended  '} {item['kind']:<11} "
                   f"{json.dumps(item['matchers'])} until {item['ends_at']} by {item['author']}: {item['comment']}")


@silence.command("expire")
@click.argument("silence_id", type=int)
@with_app
def silence_expire(app, silence_id):
    from .silences import SilenceError, expire_silence

    try:
        expire_silence(silence_id)
    except SilenceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"silence {silence_id} expired")


@alerts.command("export")
@click.option("--out", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write (default: alerts/prometheus beside the rules file).")
def alerts_export(directory):
    """Write the rules as Prometheus rule files (alerts/prometheus/controlplane.rules.yml)."""
    from ..settings import Settings
    from .export import export
    from .rules import RulesError, load_rules

    settings = Settings.from_env()
    try:
        rules = load_rules(settings.alert_rules_file)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    path = export(rules, directory or settings.alert_rules_file.parent / "prometheus", settings.alert_evaluation_seconds)
    click.echo(f"wrote {path} ({len(rules.rules)} rules)")
