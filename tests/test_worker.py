import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from controlplane.extensions import db
from controlplane.health.models import CheckResult
from controlplane.jobs import Worker
from controlplane.jobs.leader import LOCK_KEY, LeaderElection
from controlplane.jobs.models import JobRun, WorkerHeartbeat
from controlplane.jobs.records import record_run
from controlplane.timeutil import utcnow
from tests.conftest import wait_for


def rows(app, model, *where):
    with app.app_context():
        result = db.session.execute(select(model).where(*where)).scalars().all()
        db.session.remove()
        return result


def test_worker_leads_on_sqlite_refreshes_health_and_records_runs(make_app):
    app = make_app(LEADER_POLL_SECONDS="0.2")
    worker = Worker(app)
    worker.start()
    try:
        runs = wait_for(lambda: rows(app, JobRun, JobRun.job_id == "health-refresh", JobRun.outcome == "success"))
        assert runs[0].instance == worker.instance and runs[0].duration_ms >= 0
        beats = rows(app, WorkerHeartbeat)
        assert [(b.instance, b.is_leader) for b in beats] == [(worker.instance, True)]
        assert wait_for(lambda: rows(app, CheckResult, CheckResult.check_name == "database"))
        assert wait_for(lambda: rows(app, JobRun, JobRun.job_id == "retention", JobRun.outcome == "success"))
    finally:
        worker.stop()
    assert rows(app, WorkerHeartbeat) == [], "a cleanly stopped worker removes its heartbeat"


def test_a_failing_job_is_recorded_with_its_error(app):
    def broken():
        raise ValueError("disk on fire")

    with app.app_context():
        run = record_run("retention", "test", broken)
        assert run.outcome == "failure" and run.error == "ValueError: disk on fire"
        assert run.finished_at is not None


def test_retention_job_prunes_old_rows(make_app):
    app = make_app(CHECK_RESULTS_RETENTION_DAYS="1", JOB_RUNS_RETENTION_DAYS="1")
    old = utcnow() - timedelta(days=3)
    with app.app_context():
        db.session.add(CheckResult(check_name="database", status="healthy", duration_ms=1, checked_at=old, instance="x"))
        db.session.add(JobRun(job_id="retention", instance="x", started_at=old, finished_at=old, outcome="success"))
        db.session.commit()
    worker = Worker(app)
    assert worker.leader.poll(), "retention is leader-only"
    retention = next(job for job in worker.jobs if job.id == "retention")
    try:
        worker._run(retention)
    finally:
        worker.leader.release()
    assert rows(app, CheckResult, CheckResult.checked_at < utcnow() - timedelta(days=2)) == []
    assert [r.outcome for r in rows(app, JobRun)] == ["success"]  # only the run just recorded


def test_scheduler_jobs_use_utc_ids_coalescing_and_misfire_grace(make_app):
    worker = Worker(make_app())
    worker.start()
    try:
        jobs = {job.id: job for job in worker.scheduler.get_jobs()}
        assert set(jobs) == {"heartbeat", "health-refresh", "delivery-dispatch", "webhook-fan-out",
                             "usage-rollup", "retention", "backup-full", "backup-retention", "restore-drill",
                             "alert-evaluate", "alert-notify", "status-notify"}
        for job in jobs.values():
            assert job.coalesce is True and job.misfire_grace_time >= 1 and job.max_instances == 1
        assert str(worker.scheduler.timezone) == "UTC"
        assert str(jobs["backup-full"].trigger) == "cron[minute='0']"  # hourly by default
        assert str(jobs["restore-drill"].trigger) == "cron[day_of_week='sun', hour='4', minute='0']"
    finally:
        worker.stop()


def test_daily_backups_at_the_configured_utc_time_and_the_jobs_record_their_runs(make_app):
    app = make_app(BACKUP_HOURLY="false", BACKUP_FULL_AT="02:45", BACKUP_DRILL_WEEKDAY="wed")
    worker = Worker(app)
    jobs = {job.id: job for job in worker.jobs}
    assert jobs["backup-full"].cron == {"hour": 2, "minute": 45}
    assert jobs["backup-retention"].cron == {"hour": 2, "minute": 15}
    assert jobs["restore-drill"].cron == {"day_of_week": "wed", "hour": 3, "minute": 45}
    assert worker.leader.poll(), "backup jobs are leader-only"
    try:
        worker._run(jobs["backup-full"])
        worker._run(jobs["restore-drill"])
    finally:
        worker.leader.release()
    outcomes = {r.job_id: r.outcome for r in rows(app, JobRun)}
    assert outcomes == {"backup-full": "success", "restore-drill": "success"}


def test_bad_backup_schedule_settings_are_refused(tmp_path):
    from controlplane.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="BACKUP_FULL_AT must be a UTC time of day as HH:MM"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "BACKUP_FULL_AT": "25:00"})
    with pytest.raises(SettingsError, match="BACKUP_ENCRYPTION_KEY must be 32 random bytes"):
        Settings.from_env({"DATA_DIR": str(tmp_path), "BACKUP_ENCRYPTION_KEY": "too-short"})
    with pytest.raises(SettingsError, match="BACKUP_ENCRYPTION_KEY must be set in production"):
        Settings.from_env({"APP_ENV": "production", "JWT_SECRET": "x" * 40, "API_KEY_SALT": "y" * 40,
                           "DATABASE_URL": "postgresql://u@h/d"})


@pytest.mark.postgres
def test_leader_only_jobs_do_not_run_without_the_lock(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url, LEADER_POLL_SECONDS="0.2")
    holder = create_engine(postgres_url, poolclass=NullPool).connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
    worker = Worker(app)
    worker.start()
    try:
        beats = wait_for(lambda: rows(app, WorkerHeartbeat))
        assert beats[0].is_leader is False
        time.sleep(1.0)
        assert rows(app, JobRun) == []
        holder.close()  # the other leader goes away
        wait_for(lambda: rows(app, WorkerHeartbeat, WorkerHeartbeat.is_leader.is_(True)), timeout=5)
        assert wait_for(lambda: rows(app, JobRun, JobRun.job_id == "health-refresh"))
    finally:
        worker.stop()


@pytest.mark.postgres
def test_leader_election_is_exclusive(postgres_url):
    first, second = LeaderElection(postgres_url), LeaderElection(postgres_url)
    try:
        assert first.poll() is True
        assert second.poll() is False
        assert first.poll() is True  # keeps it
        first.release()
        assert second.poll() is True
    finally:
        first.release()
        second.release()


def _start_worker(env):
    return subprocess.Popen([sys.executable, "-m", "controlplane", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_worker_processes_one_leads_and_the_other_takes_over_after_sigkill(make_app, postgres_url, base_env):
    app = make_app(DATABASE_URL=postgres_url)  # migrates the database
    poll = 0.5
    env = {**os.environ, **base_env, "DATABASE_URL": postgres_url, "LEADER_POLL_SECONDS": str(poll),
           "LOG_LEVEL": "WARNING"}
    workers = [_start_worker(env), _start_worker(env)]
    try:
        beats = wait_for(lambda: len(b := rows(app, WorkerHeartbeat)) == 2 and b, timeout=30)
        leaders = wait_for(lambda: [b for b in rows(app, WorkerHeartbeat) if b.is_leader])
        assert len(leaders) == 1
        leader_pid = leaders[0].pid
        assert {b.pid for b in beats} == {w.pid for w in workers}
        wait_for(lambda: rows(app, JobRun, JobRun.job_id == "health-refresh"))
        assert {r.instance for r in rows(app, JobRun)} == {leaders[0].instance}, "only the leader runs leader jobs"

        survivor = next(w for w in workers if w.pid != leader_pid)
        survivor_runs = lambda: len(rows(app, JobRun, JobRun.instance.like(f"%:{survivor.pid}")))  # noqa: E731
        assert survivor_runs() == 0
        os.kill(leader_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: [b for b in rows(app, WorkerHeartbeat) if b.is_leader and b.pid == survivor.pid],
                 timeout=10, interval=0.05)
        takeover = time.monotonic() - killed_at
        # Within one lock-poll interval, plus the heartbeat write and our own polling.
        assert takeover <= poll + 1.0, f"takeover took {takeover:.2f}s"
        wait_for(survivor_runs, timeout=10)  # the new leader catches up at once
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()


@pytest.mark.slow
def test_worker_process_stops_cleanly_on_sigterm(make_app, base_env):
    app = make_app()
    env = {**os.environ, **base_env, "LEADER_POLL_SECONDS": "0.2", "LOG_LEVEL": "WARNING"}
    process = _start_worker(env)
    try:
        wait_for(lambda: rows(app, WorkerHeartbeat), timeout=30)
        process.send_signal(signal.SIGTERM)
        try:
            # About 2 s normally; generous because running jobs finish first, and a loaded
            # machine (CI sharing cores with other work) can stretch SQLite's lock waits.
            code = process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("worker ignored SIGTERM: " + process.communicate()[1].decode()[-3000:]) from None
        assert code == 0, process.stderr.read().decode()[-2000:]
        assert rows(app, WorkerHeartbeat) == []
    finally:
        if process.poll() is None:
            process.kill()


def test_physical_backups_schedule_wal_jobs_and_a_daily_base_backup(make_app):
    worker = Worker(make_app(BACKUP_ENGINE="pg_physical", BACKUP_WAL_SEAL_SECONDS="30"))
    jobs = {job.id: job for job in worker.jobs}
    assert jobs["wal-archive"].seconds == 30 and jobs["wal-archive"].leader_only
    assert jobs["wal-bundle"].cron == {"minute": 5}
    assert jobs["backup-full"].cron == {"hour": 3, "minute": 0}  # WAL covers the hours between
