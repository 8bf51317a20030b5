"""A new install pages nobody: every shipped rule, evaluated pass after pass on a freshly migrated
database (migrated as Fly's release_command does it, and run by a real worker's first seconds),
pages nobody and opens no incident;
yet a backup that never comes, or a worker that never joins, still pages once the grace is over."""
from __future__ import annotations

from datetime import timedelta

import flask_migrate
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from controlplane.alerting.engine import evaluate
from controlplane.alerting.models import AlertEvent, AlertNotification, AlertState, Deployment, Installation
from controlplane.cli import main
from controlplane.extensions import db
from controlplane.status.models import Incident
from controlplane.timeutil import as_utc, utcnow
from tests.conftest import wait_for

PAGED = {"PAGERDUTY_ROUTING_KEY": "k" * 32}


def count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def firing() -> set[str]:
    return set(db.session.execute(select(AlertState.rule).where(AlertState.state == "firing")).scalars())


def evaluate_passes(app, start, minutes: float, every_seconds: int = 15) -> list:
    settings, rules = app.extensions["controlplane.settings"], app.extensions["controlplane.alert_rules"]
    transitions = []
    for step in range(int(minutes * 60 / every_seconds) + 1):
        transitions += evaluate(settings, rules, start + timedelta(seconds=step * every_seconds))
    return transitions


def installed_at(app):
    with app.app_context():
        return as_utc(db.session.execute(select(Installation.first_migrated_at)).scalar_one())


def move_install_back(app, hours: float) -> None:
    """As if this database had been migrated `hours` ago."""
    with app.app_context():
        db.session.execute(update(Installation).values(first_migrated_at=utcnow() - timedelta(hours=hours)))
        db.session.commit()


def pages() -> int:
    """Notifications that page (triggers and resolves); deploy and migration change events never do."""
    return db.session.execute(select(func.count()).select_from(AlertNotification)
                              .where(AlertNotification.action.in_(("trigger", "resolve")))).scalar_one()


def test_a_fresh_install_evaluated_for_five_minutes_pages_nobody(make_app, base_env):
    app = make_app(migrate=False, **PAGED)
    migrated = CliRunner().invoke(main, ["db", "upgrade"], env={**base_env, **PAGED})  # Fly's release_command
    assert migrated.exit_code == 0, migrated.output
    runner = app.extensions["controlplane.health"].make_runner(app, "first-start")
    with app.app_context():
        runner.run(force=True)  # the checks as the worker's first health refresh runs them
        transitions = evaluate_passes(app, utcnow(), minutes=5)
        assert [t for t in transitions if t.name in ("pending", "firing")] == []
        assert pages() == 0 and count(Incident) == 0 and firing() == set() and count(AlertEvent) == 0
        assert db.session.execute(select(AlertNotification.rule)).scalars().all() == ["migration-change"]
    runner.shutdown()


def oldest_evaluation(app):
    """When the least recently evaluated rule was evaluated, once every rule has been."""
    with app.app_context():
        db.session.remove()
        evaluated = db.session.execute(select(AlertState.last_evaluated_at)).scalars().all()
        if len(evaluated) < len(app.extensions["controlplane.alert_rules"].rules) or None in evaluated:
            return None
        return min(as_utc(at) for at in evaluated)


def test_the_first_seconds_of_a_real_worker_page_nobody(make_app):
    from controlplane.jobs import Worker

    app = make_app(LEADER_POLL_SECONDS="0.2", ALERT_EVALUATION_SECONDS="1", **PAGED)
    worker = Worker(app)
    worker.start()
    try:
        first = wait_for(lambda: oldest_evaluation(app), timeout=20)
        wait_for(lambda: oldest_evaluation(app) > first + timedelta(seconds=3), timeout=20)  # a few more passes
    finally:
        worker.stop()
    with app.app_context():
        db.session.remove()
        assert pages() == 0 and count(Incident) == 0 and firing() == set()
        assert db.session.execute(select(AlertState.rule).where(AlertState.error.is_not(None))).first() is None


def test_no_full_backup_pages_after_the_grace_and_the_threshold(make_app):
    app = make_app(**PAGED)
    start = installed_at(app)
    with app.app_context():
        evaluate_passes(app, start + timedelta(hours=27) - timedelta(minutes=2), minutes=1)
        assert "BackupMissing" not in firing()
        (paged,) = [t for t in evaluate_passes(app, start + timedelta(hours=27, minutes=1), minutes=0)
                    if t.rule.name == "BackupMissing"]
        assert paged.name == "firing" and paged.rule.render("summary", paged.value) == \
            "No successful full backup in the last 26.0 hours"
        assert db.session.execute(select(AlertNotification.rule).where(AlertNotification.rule == "BackupMissing")) \
            .scalar_one() == "BackupMissing"


@pytest.mark.parametrize("kind", ["manual", "pre-migration", "full"])
def test_manual_and_pre_migration_backups_count_as_full(make_app, kind):
    from controlplane.backups.operations import take_backup

    app = make_app(**PAGED)
    move_install_back(app, hours=40)  # a database migrated long ago: its backups are late
    with app.app_context():
        evaluate_passes(app, utcnow(), minutes=0)
        assert "BackupMissing" in firing()
        assert take_backup(app.extensions["controlplane.settings"], kind).status == "succeeded"
        (resolved,) = [t for t in evaluate_passes(app, utcnow(), minutes=0) if t.rule.name == "BackupMissing"]
        assert resolved.name == "resolved"


def test_a_worker_that_never_joins_pages_after_the_start_up_grace(make_app):
    app = make_app(**PAGED)
    start = installed_at(app)
    with app.app_context():
        evaluate_passes(app, start, minutes=9)
        assert firing() == set()
        evaluate_passes(app, start + timedelta(minutes=10), minutes=3)
        assert {"NoLiveWorker", "NoLeader"} <= firing()


def test_an_existing_database_is_measured_from_its_oldest_record(make_app):
    from controlplane.alerting.deployments import record_deployment

    app = make_app()
    long_ago = utcnow() - timedelta(days=90)
    with app.app_context():
        flask_migrate.downgrade(revision="0019_status_subscribers")
        record_deployment(app.extensions["controlplane.settings"], "deploy", "succeeded", version="0.9")
        db.session.execute(update(Deployment).values(started_at=long_ago))
        db.session.commit()
        flask_migrate.upgrade()
    assert abs((installed_at(app) - long_ago).total_seconds()) < 1

