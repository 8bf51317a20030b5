"""The models and the migrations describe the same schema, on SQLite and on PostgreSQL."""
import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from controlplane.cli import main
from controlplane.extensions import db
from controlplane.schema import database_revision, schema_problems

TABLES = {"check_days", "status_subscribers", "status_events", "status_notifications", "maintenances", "incidents", "incident_updates", "request_minutes", "alert_silences", "alert_notifications", "alert_routes", "alert_attempts", "alert_states", "alert_events", "deployments", "backups", "restore_drills", "check_results", "request_stats", "worker_heartbeats", "job_runs", "api_keys", "audit_log", "messages", "message_recipients", "postal_events",
          "events", "webhooks", "webhook_deliveries", "users", "usage_daily",
          "inbound_messages"}
HEAD = "0025_status_components"


def test_models_match_migrations(app):
    with app.app_context():
        assert schema_problems() == []
        assert TABLES <= set(inspect(db.engine).get_table_names())


@pytest.mark.postgres
def test_models_match_migrations_on_postgres(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url)
    with app.app_context():
        assert schema_problems() == []


def test_downgrade_to_base_and_up_again(app):
    import flask_migrate

    with app.app_context():
        flask_migrate.downgrade(revision="base")
        assert not TABLES & set(inspect(db.engine).get_table_names())
        assert database_revision() is None
        flask_migrate.upgrade()
        assert schema_problems() == []


def test_check_reports_an_unmigrated_database(make_app):
    app = make_app(migrate=False)
    with app.app_context():
        problems = schema_problems()
    assert problems[0].startswith(f"database at nothing, migrations end at {HEAD}")


def test_db_cli_upgrade_current_check(base_env):
    runner = CliRunner()
    env = dict(base_env)
    result = runner.invoke(main, ["db", "check"], env=env)
    assert result.exit_code == 1 and "schema check failed" in result.output
    result = runner.invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert f"database at {HEAD}" in result.output
    assert runner.invoke(main, ["db", "current"], env=env).output.strip().endswith(HEAD)
    result = runner.invoke(main, ["db", "check"], env=env)
    assert result.exit_code == 0 and "agree" in result.output
    result = runner.invoke(main, ["db", "downgrade", "--yes", "--revision", "base"], env=env)
    assert result.exit_code == 0 and "(empty: no migrations applied)" in result.output


def test_cli_commands_on_an_unmigrated_database_explain_instead_of_crashing(base_env):
    result = CliRunner().invoke(main, ["keys", "list"], env=base_env)
    assert result.exit_code == 1
    assert "database error: " in result.output and "controlplane db upgrade" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_check_days_are_backfilled_from_existing_results(make_app, database, request):
    """0019 turns the results the database still holds into the first days of uptime history."""
    from datetime import datetime, timezone

    import flask_migrate
    from sqlalchemy import text

    app = make_app(**({"DATABASE_URL": request.getfixturevalue("postgres_url")} if database == "postgres" else {}))
    with app.app_context():
        flask_migrate.downgrade(revision="0018_maintenances")
        for hour, status in ((1, "healthy"), (2, "unhealthy"), (3, "degraded"), (4, "unconfigured")):
            db.session.execute(text(
                "INSERT INTO check_results (check_name, status, duration_ms, checked_at, instance) "
                "VALUES ('postal', :status, 1, :at, 't')"),
                {"status": status, "at": datetime(2026, 11, 2, 23 + hour - 4, tzinfo=timezone.utc)})
        db.session.commit()
        flask_migrate.upgrade()
        rows = db.session.execute(text("SELECT check_name, day, total, unhealthy, degraded FROM check_days")).all()
    assert [(r[0], str(r[1]), r[2], r[3], r[4]) for r in rows] == [("postal", "2026-11-02", 3, 1, 1)]
