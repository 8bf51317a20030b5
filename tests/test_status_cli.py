"""`controlplane status ...`: incidents, maintenance and subscribers from a shell, with the API's
rules and one-line errors."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from controlplane.cli import main
from controlplane.timeutil import utcnow


@pytest.fixture
def cli(app, base_env):
    """Runs `controlplane ARGS` against the migrated `app` database; returns the result."""
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), env=base_env)


def test_the_incident_lifecycle_from_the_cli(cli, app):
    created = cli("status", "incident", "create", "--name", "Slow sends", "--body", "Looking into it",
                  "--impact", "major", "--component", "delivery=partial_outage", "--author", "ada")
    assert created.exit_code == 0, created.output
    assert created.stdout.startswith("incident 1 (investigating, impact major): Slow sends")
    assert app.test_client().get("/api/v2/components.json").get_json()["components"][1]["status"] == "partial_outage"
    assert cli("status", "incident", "update", "1", "--status", "identified", "--body", "Found").exit_code == 0
    listed = cli("status", "incident", "list", "--json")
    assert json.loads(listed.stdout)[0]["incident_updates"][0]["body"] == "Found"
    resolved = cli("status", "incident", "resolve", "1", "--json")
    assert json.loads(resolved.stdout)["status"] == "resolved"
    assert cli("status", "incident", "list").stdout.strip() == "no unresolved incidents"
    assert "Slow sends" in cli("status", "incident", "list", "--all").output


@pytest.mark.parametrize("args,message", [
    (("update", "1", "--status", "investigating", "--body", "b"), "cannot go back"),
    (("update", "99", "--status", "resolved", "--body", "b"), "no incident 99"),
    (("create", "--name", "x", "--body", "b", "--component", "moon=major_outage"), "unknown component 'moon'"),
    (("create", "--name", "x", "--body", "b", "--component", "api"), "is not component=status"),
    (("create", "--name", "x", "--body", "b", "--impact", "huge"), "Invalid value for '--impact'"),
])
def test_incident_cli_errors_are_one_line(cli, args, message):
    cli("status", "incident", "create", "--name", "First", "--body", "b", "--status", "identified")
    result = cli("status", "incident", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_postmortem_from_a_file(cli, app, tmp_path):
    cli("status", "incident", "create", "--name", "Outage", "--body", "b")
    text = tmp_path / "pm.md"
    text.write_text("Root cause: a full disk.\n")
    assert cli("status", "incident", "postmortem", "1", "--file", str(text)).exit_code == 0
    assert "Root cause: a full disk." in app.test_client().get("/incidents/1").get_data(as_text=True)


def test_maintenance_from_the_cli(cli):
    start, end = utcnow() + timedelta(hours=1), utcnow() + timedelta(hours=2)
    result = cli("status", "maintenance", "schedule", "--name", "DB upgrade", "--body", "b", "--component", "api",
                 "--start", start.isoformat(), "--end", end.isoformat())
    assert result.exit_code == 0 and result.stdout.startswith("maintenance 1: ")
    assert "scheduled" in cli("status", "maintenance", "list").output
    assert cli("status", "maintenance", "cancel", "1").stdout.strip() == "maintenance 1 cancelled"
    assert json.loads(cli("status", "maintenance", "list", "--json").stdout)[0]["status"] == "completed"
    bad = cli("status", "maintenance", "schedule", "--name", "x", "--body", "b", "--component", "api",
              "--start", "tomorrow", "--end", end.isoformat())
    assert bad.exit_code == 2 and "is not an ISO-8601 time" in bad.output
    backwards = cli("status", "maintenance", "schedule", "--name", "x", "--body", "b", "--component", "api",
                    "--start", end.isoformat(), "--end", start.isoformat())
    assert backwards.exit_code == 1 and "the end after the start" in backwards.output


def test_subscribers_from_the_cli(cli, base_env):
    env_private = {**base_env, "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}
    added = CliRunner().invoke(main, ["status", "subscribers", "add-webhook", "http://127.0.0.1:9/hook"], env=env_private)
    assert added.exit_code == 0 and "signing secret (shown once): " in added.output
    refused = cli("status", "subscribers", "add-webhook", "http://127.0.0.1:9/other")
    assert refused.exit_code == 1 and "refused" in refused.output
    mail = cli("status", "subscribers", "add-email", "ops@example.com")
    assert mail.exit_code == 0 and "confirmation mail queued for ops@example.com" in mail.output
    assert "less than 10 minutes ago" in cli("status", "subscribers", "add-email", "ops@example.com").output
    listed = json.loads(cli("status", "subscribers", "list", "--json").stdout)
    assert [(s["kind"], s["state"]) for s in listed] == [("webhook", "confirmed"), ("email", "unconfirmed")]
    assert cli("status", "subscribers", "remove", "1").exit_code == 0
    assert cli("status", "subscribers", "remove", "42").stderr.strip().endswith("Error: no subscriber 42")


def test_publish_needs_a_prefix(cli):
    result = cli("status", "publish")
    assert result.exit_code == 1 and "STATUS_EXPORT_PREFIX is not set" in result.output


def test_the_publish_job_exists_only_when_configured(make_app):
    from controlplane.jobs import job_list

    plain = make_app().extensions["controlplane.settings"]
    publishing = make_app(STATUS_EXPORT_PREFIX="status-site").extensions["controlplane.settings"]
    assert "status-publish" not in {j.id for j in job_list(plain, 5)}
    assert {"status-notify", "status-publish"} <= {j.id for j in job_list(publishing, 5)}
