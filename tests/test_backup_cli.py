"""`controlplane backup ...` and the pre-migration backup of `controlplane db upgrade`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from controlplane.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(make_app, base_env):
    make_app()  # migrated

    def run(*args, input=None, env=None):
        return CliRunner().invoke(main, list(args), env={**base_env, **(env or {})}, input=input)

    return run


def test_run_list_show_verify_pin_and_json(cli):
    result = cli("backup", "run")
    assert result.exit_code == 0, result.output
    assert "backup 1 (" in result.output and "succeeded" in result.output
    listing = cli("backup", "list")
    assert "full" in listing.output and "succeeded" in listing.output and "catalog, storage" in listing.output
    rows = json.loads(cli("backup", "list", "--json").stdout)
    assert rows[0]["id"] == 1 and rows[0]["artefacts"][0]["plain_sha256"]
    # `backup run` takes a full by default: a complete copy, which is what BackupMissing counts.
    assert rows[0]["kind"] == "full" and rows[0]["full_copy"] is True
    shown = cli("backup", "show", rows[0]["name"])
    assert "sha256 plain" in shown.output and "tables" in shown.output
    assert json.loads(cli("backup", "show", "1", "--json").stdout)["status"] == "succeeded"
    assert "verified" in cli("backup", "verify", "1").output
    assert "pinned" in cli("backup", "pin", "1").output
    assert json.loads(cli("backup", "show", "1", "--json").stdout)["pinned"] is True
    assert "unpinned" in cli("backup", "unpin", "1").output


def test_unknown_ids_and_missing_targets_are_explained(cli):
    result = cli("backup", "show", "42")
    assert result.exit_code == 1 and "no backup '42'" in result.output and "Traceback" not in result.output
    cli("backup", "run")
    result = cli("backup", "restore", "1", "--yes")
    assert result.exit_code == 1 and "--target-url URL" in result.output
    result = cli("backup", "restore", "1", "--to-time", "2026-11-30T10:00:00Z", "--yes")
    assert result.exit_code == 1 and "pg_physical" in result.output


@pytest.fixture
def fresh_target(base_env, tmp_path, request) -> str:
    """A database that does not exist yet, of the suite's kind."""
    if base_env["DATABASE_URL"].startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'copy.db'}"
    import uuid

    from sqlalchemy.engine import make_url

    databases = request.getfixturevalue("postgres_databases")
    name = f"cp_test_{uuid.uuid4().hex[:12]}"
    databases.created.append(name)
    return make_url(base_env["DATABASE_URL"]).set(database=name).render_as_string(hide_password=False)


def test_restore_asks_first_and_reports_the_rto(cli, fresh_target):
    cli("backup", "run")
    refused = cli("backup", "restore", "1", "--target-url", fresh_target, input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    done = cli("backup", "restore", "1", "--target-url", fresh_target, input="y\n")
    assert done.exit_code == 0, done.output
    assert "(the RTO achieved;" in done.output and "tables match" in done.output


def test_status_prune_and_drill(cli):
    assert "RPO now          unbounded" in cli("backup", "status").output
    cli("backup", "run", "--kind", "full")
    status = json.loads(cli("backup", "status", "--json").stdout)
    assert status["last_full"]["size_bytes"] > 0 and status["current_rpo_seconds"] is not None
    assert "would delete 0 backup(s)" in cli("backup", "prune", "--dry-run").output
    drill = cli("backup", "drill")
    assert drill.exit_code == 0 and "restore drill passed" in drill.output
    assert json.loads(cli("backup", "status", "--json").stdout)["last_drill"]["ok"] is True


def _migrations_with_one_more(tmp_path: Path) -> Path:
    """A copy of our migrations plus one new revision, as a deploy would bring."""
    folder = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", folder, ignore=shutil.ignore_patterns("__pycache__"))
    from tests.test_migrations import HEAD

    (folder / "versions" / "9999_next.py").write_text(f'''
from alembic import op
import sqlalchemy as sa

revision = "9999_next"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("next_feature", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table("next_feature")
''')
    return folder


def test_db_upgrade_takes_a_pre_migration_backup_on_postgres(make_app, postgres_url, base_env, tmp_path, caplog):
    make_app(DATABASE_URL=postgres_url)
    env = {**base_env, "DATABASE_URL": postgres_url, "MIGRATIONS_DIR": str(_migrations_with_one_more(tmp_path))}
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "pre-migration backup 1 (" in result.output and "database at 9999_next" in result.output
    rows = json.loads(CliRunner().invoke(main, ["backup", "list", "--json"], env=env).stdout)
    assert [(r["kind"], r["status"], r["full_copy"]) for r in rows] == [("pre-migration", "succeeded", True)]
    # Nothing left to apply: no second backup.
    assert "pre-migration" not in CliRunner().invoke(main, ["db", "upgrade"], env=env).stdout


def test_skipping_the_pre_migration_backup_is_logged(make_app, postgres_url, base_env, tmp_path, caplog):
    make_app(DATABASE_URL=postgres_url)
    env = {**base_env, "DATABASE_URL": postgres_url, "MIGRATIONS_DIR": str(_migrations_with_one_more(tmp_path))}
    result = CliRunner().invoke(main, ["db", "upgrade", "--skip-backup"], env=env)
    assert result.exit_code == 0 and "pre-migration backup" not in result.stdout
    assert any("pre-migration backup skipped" in r.getMessage() for r in caplog.records)
    assert json.loads(CliRunner().invoke(main, ["backup", "list", "--json"], env=env).stdout) == []
