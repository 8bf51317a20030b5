"""The worker: APScheduler wiring, the job list, leader election and heartbeats.

Every job is declared once in `job_list()`. Leader-only jobs run only while this process holds
the advisory lock (see leader.py); the others run on every worker. Each run of a recorded job
leaves a `job_runs` row that metrics, alerts and the status page read.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from ..database import install_answer_deadline, service_connect_args
from ..extensions import db
from ..telemetry.worker_metrics import serve_worker_metrics
from ..timeutil import utcnow
from .leader import LeaderElection
from .records import forget_worker, record_run, write_heartbeat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    id: str
    seconds: float
    run: Callable[["Worker"], None]
    leader_only: bool
    recorded: bool = True
    description: str = ""
    # APScheduler cron fields (UTC) for jobs due at a time of day rather than every `seconds`.
    cron: dict | None = None


def _heartbeat(worker: "Worker") -> None:
    was_leading = worker.leader.is_leader
    leading = worker.leader.poll()
    write_heartbeat(worker.instance, worker.started_at, leading)
    if leading and not was_leading:
        worker.run_leader_jobs_now()


def _refresh_health(worker: "Worker") -> None:
    outcomes = worker.check_runner.run()
    worker.app.extensions["controlplane.health"].cache.put(outcomes)


def _dispatch(worker: "Worker") -> None:
    from ..delivery import dispatch_due

    # Drain the backlog within this run, batch by batch, rather than one batch per interval.
    while dispatch_due(worker.settings, worker.postal, worker.instance, worker.send_pool):
        pass


def _fan_out(worker: "Worker") -> None:
    from ..events.fanout import fan_out

    while fan_out(worker.settings, worker.webhook_http):
        pass


def _usage_rollup(worker: "Worker") -> None:
    from ..gateway.usage import roll_up

    roll_up(days=2)


def _retention(worker: "Worker") -> None:
    from ..health.runner import prune_check_results
    from ..telemetry.request_stats import prune_request_stats
    from .records import prune_job_runs

    settings = worker.settings
    deleted = {
        "request_stats": prune_request_stats(settings.request_stats_retention_days),
        "check_results": prune_check_results(settings.check_results_retention_days),
        "job_runs": prune_job_runs(settings.job_runs_retention_days),
    }
    log.info("retention pruned rows", extra={"deleted": deleted})


def _backup(worker: "Worker") -> None:
    from ..backups.operations import take_backup

    take_backup(worker.settings, "full")


def _backup_retention(worker: "Worker") -> None:
    from ..backups.retention import prune

    prune(worker.settings)


def _restore_drill(worker: "Worker") -> None:
    from ..backups.drill import raise_if_failed, run_drill

    raise_if_failed(run_drill(worker.settings))  # a failed drill is a failed run, for alerts


def _wal_archive(worker: "Worker") -> None:
    from ..backups.wal import WalReceiver, seal_spool

    if worker.wal_receiver is None:
        worker.wal_receiver = WalReceiver(worker.settings)
    worker.wal_receiver.ensure_running()
    seal_spool(worker.settings)


def _wal_bundle(worker: "Worker") -> None:
    from ..backups.wal import bundle_finished_hours

    bundle_finished_hours(worker.settings)


def backup_jobs(settings) -> list[Job]:
    hour, minute = settings.backup_full_at
    # Logical engines lose what happened since the newest dump, so they dump hourly. The physical
    # engine's WAL archive covers the time between its daily base backups.
    hourly = settings.backup_hourly and settings.backup_engine != "pg_physical"
    wal = [Job("wal-archive", settings.backup_wal_seal_seconds, _wal_archive, leader_only=True,
               description="keep pg_receivewal running and seal the WAL it received"),
           Job("wal-bundle", 3600, _wal_bundle, leader_only=True, cron={"minute": 5},
               description="bundle the past hours' WAL segments into one incremental backup")] \
        if settings.backup_engine == "pg_physical" else []
    return [
        *wal,
        Job("backup-full", 3600, _backup, leader_only=True,
            cron={"minute": minute} if hourly else {"hour": hour, "minute": minute},
            description="take a full backup" + (" every hour" if hourly else " daily")),
        Job("backup-retention", 86400, _backup_retention, leader_only=True,
            cron={"hour": hour, "minute": (minute + 30) % 60},
            description="delete backups past BACKUP_RETENTION_DAYS"),
        Job("restore-drill", 7 * 86400, _restore_drill, leader_only=True,
            cron={"day_of_week": settings.backup_drill_weekday, "hour": (hour + 1) % 24, "minute": minute},
            description="restore the newest backup into a scratch database and compare it"),
    ]


def _evaluate_alerts(worker: "Worker") -> None:
    from ..alerting.engine import evaluate
    from ..alerting.watchdog import evaluation_completed

    transitions = evaluate(worker.settings, worker.app.extensions["controlplane.alert_rules"])
    # What the web watchdogs read (and the heartbeat ping): a pass that raised is not recorded.
    evaluation_completed(worker.app, worker.settings, worker.instance)
    if any(t.name in ("firing", "resolved") for t in transitions) and worker.scheduler.running:
        # Page now rather than at the notifier's next tick; it still runs as its own job, so a
        # slow PagerDuty never delays the next evaluation.
        worker.scheduler.modify_job("alert-notify", next_run_time=utcnow())


def _notify_alerts(worker: "Worker") -> None:
    from ..alerting.notifications import send_due

    while send_due(worker.settings, utcnow()):
        pass


def _notify_subscribers(worker: "Worker") -> None:
    from ..status.notify import fan_out, record_maintenance, send_due

    now = utcnow()
    changed = record_maintenance(now) > 0
    while fan_out(now):  # a batch of events at a time
        changed = True
    while send_due(worker.settings, worker.webhook_http, now):
        pass
    if changed and worker.settings.status_export_prefix and worker.scheduler.running:
        worker.scheduler.modify_job("status-publish", next_run_time=utcnow())  # the copy elsewhere, now


def _publish_status(worker: "Worker") -> None:
    from ..status.export import publish

    publish(worker.app, worker.settings)


def status_jobs(settings) -> list[Job]:
    jobs = [Job("status-notify", 5, _notify_subscribers, leader_only=True, recorded=False,
                description="record maintenance starts and ends, tell status subscribers of changes")]
    if settings.status_export_prefix:
        jobs.append(Job("status-publish", 60, _publish_status, leader_only=True,
                        description="push the static status page to the storage backend when it changed"))
    return jobs


def job_list(settings, health_tick_seconds: float) -> list[Job]:
    return [*backup_jobs(settings), *status_jobs(settings),
        Job("alert-evaluate", settings.alert_evaluation_seconds, _evaluate_alerts, leader_only=True,
            recorded=False, description="evaluate every alert rule and record state changes"),
        Job("alert-notify", 5, _notify_alerts, leader_only=True, recorded=False,
            description="send due alert notifications through their channels"),
        Job("heartbeat", settings.leader_poll_seconds, _heartbeat, leader_only=False, recorded=False,
            description="write this worker's heartbeat and try for the leader lock"),
        Job("health-refresh", health_tick_seconds, _refresh_health, leader_only=True,
            description="run the due health checks and store their results"),
        # Every worker delivers: rows are claimed with SKIP LOCKED. Runs every second, so its
        # runs are not recorded one by one; delivery metrics and message states show its work.
        Job("delivery-dispatch", settings.delivery_interval_seconds, _dispatch, leader_only=False,
            recorded=False, description="send due messages through Postal"),
        Job("webhook-fan-out", settings.delivery_interval_seconds, _fan_out, leader_only=False,
            recorded=False, description="send due subscriber webhooks"),
        Job("usage-rollup", 300, _usage_rollup, leader_only=True,
            description="count messages per key per day by outcome"),
        Job("retention", 3600, _retention, leader_only=True,
            description="delete request_stats, check_results and job_runs past their retention"),
    ]


RECORDED_JOB_IDS = ("health-refresh", "usage-rollup", "retention", "backup-full", "backup-retention", "restore-drill",
                    "wal-archive", "wal-bundle", "status-publish")


class Worker:
    def __init__(self, app):
        self.app = app
        self.settings = app.extensions["controlplane.settings"]
        self.instance = f"{self.settings.instance_id}:{os.getpid()}"
        self.started_at = utcnow()
        self.leader = LeaderElection(self.settings.database_url,
                                     service_connect_args(self.settings, "controlplane-leader"))
        health = app.extensions["controlplane.health"]
        self.check_runner = health.make_runner(app, self.instance)
        from ..postal import postal_client

        self.postal = postal_client(app)
        from ..outbound import http_client

        self.webhook_http = http_client(app, self.settings.webhook_timeout_seconds)
        from concurrent.futures import ThreadPoolExecutor

        self.send_pool = ThreadPoolExecutor(self.settings.delivery_concurrency, thread_name_prefix="send")
        self.wal_receiver = None  # started by the wal-archive job on the leader (physical backups)
        self.jobs = job_list(self.settings, health.tick_seconds)
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
        self.metrics_server = None  # `controlplane worker` only: see run_until_signalled
        self._stopped = threading.Event()

    def start(self) -> None:
        with self.app.app_context():
            _heartbeat(self)  # lead (or not) before the first leader-only job is due
        for job in self.jobs:
            if job.cron is not None:
                # Due at a time of day; a worker that was down at that moment runs it within the hour.
                self.scheduler.add_job(self._run, "cron", args=[job], id=job.id, name=job.description,
                                       replace_existing=True, misfire_grace_time=3600, **job.cron)
                continue
            self.scheduler.add_job(
                self._run, "interval", seconds=job.seconds, args=[job], id=job.id, name=job.description,
                replace_existing=True, next_run_time=utcnow(),
                misfire_grace_time=max(1, int(job.seconds)),
            )
        self.scheduler.start()
        log.info("worker started", extra={"instance": self.instance, "leader": self.leader.is_leader})

    def run_leader_jobs_now(self) -> None:
        """On taking over, catch up at once instead of waiting out each job's interval."""
        if not self.scheduler.running:
            return  # start() schedules every job to run immediately anyway
        for job in self.jobs:
            if job.leader_only and job.cron is None:  # time-of-day jobs keep their time
                self.scheduler.modify_job(job.id, next_run_time=utcnow())

    def _run(self, job: Job) -> None:
        if job.leader_only and not self.leader.is_leader:
            return
        with self.app.app_context():
            try:
                if job.recorded:
                    record_run(job.id, self.instance, lambda: job.run(self))
                else:
                    job.run(self)
            except Exception:
                log.exception("job %s could not run", job.id)
            finally:
                db.session.remove()

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.scheduler.shutdown(wait=True)
        self.send_pool.shutdown(wait=True)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.check_runner.shutdown()
        if self.wal_receiver is not None:
            self.wal_receiver.stop()
        self.leader.release()
        try:
            with self.app.app_context():
                forget_worker(self.instance)
        except Exception as exc:
            log.warning("could not remove this worker's heartbeat: %s", exc)
        log.info("worker stopped", extra={"instance": self.instance})

    def run_until_signalled(self) -> None:
        """`controlplane worker`: run until SIGTERM or SIGINT, then finish running jobs and exit."""
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        # Its deliveries and evaluations are counted in this process only, so it has its own
        # scrape target (`controlplane run` serves them on its web /metrics instead).
        self.metrics_server = serve_worker_metrics(self.settings.worker_metrics_port)
        install_answer_deadline(self.settings)
        self.start()
        stop.wait()
        log.info("worker received a stop signal; finishing running jobs")
        self.stop()
