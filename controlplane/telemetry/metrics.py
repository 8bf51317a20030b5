"""Prometheus metrics, correct under several gunicorn workers and with a separate worker process.

Process-local series (request latency, in-flight requests, pool gauges, deliveries) live in
prometheus_client objects. Under gunicorn, `gunicorn.conf.py` sets PROMETHEUS_MULTIPROC_DIR before
this module is imported, so those objects write to per-process files that the web's /metrics
merges on every scrape. Shared state (health checks, job runs, the outbox) is read from the
database at scrape time by `StateCollector`, so it is right whichever process produced it.

The worker (`controlplane worker`) serves its own process registry on WORKER_METRICS_PORT and
never the shared state, which the web already serves (worker_metrics.py). A worker that inherited
gunicorn's directory marks its files there (`keep_out_of_web_merge`) so the web's merge skips
them: otherwise both scrape targets would count the same deliveries.
"""
from __future__ import annotations

import glob
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# The plan's alert is "p95 > 2 s": the defaults jump from 1.0 to 2.5, so an edge sits at exactly 2.0.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0)

REQUEST_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "HTTP request duration by method, route template and status code.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
PROBE_DURATION = Histogram(
    "http_server_probe_duration_seconds",
    "Probe and scrape requests (/health, /ready, /live, /metrics, static files): kept out of the "
    "request histogram so that probes never count as user traffic (telemetry/traffic.py).",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge(
    "http_server_requests_in_flight",
    "HTTP requests being served right now.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "controlplane_db_pool_size", "Configured connection pool size (without overflow).",
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "controlplane_db_pool_max_connections", "Pool size plus allowed overflow.",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKED_OUT = Gauge(
    "controlplane_db_pool_checked_out", "Pooled connections in use.",
    multiprocess_mode="livesum",
)
DB_POOL_IDLE = Gauge(
    "controlplane_db_pool_idle", "Pooled connections open and idle.",
    multiprocess_mode="livesum",
)
DB_POOL_OVERFLOW = Gauge(
    "controlplane_db_pool_overflow", "Connections open beyond the pool size.",
    multiprocess_mode="livesum",
)

CHECK_STATUS_VALUES = ("healthy", "degraded", "unhealthy", "unconfigured", "unknown")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class StateCollector:
    """Series derived from shared state: checks, jobs, workers and the build."""

    def __init__(self, snapshot, job_summaries, build: dict[str, str], extra_families=()):
        self.snapshot = snapshot
        self.job_summaries = job_summaries
        self.build = build
        # Families other domains compute from the database (e.g. the outbox), already read.
        self.extra_families = list(extra_families)

    def collect(self):
        info = GaugeMetricFamily("controlplane_build_info", "The running build.", labels=list(self.build))
        info.add_metric(list(self.build.values()), 1)
        yield info

        status = GaugeMetricFamily(
            "controlplane_check_status",
            "1 for the current status of each health check, 0 for the others.",
            labels=["check", "status"],
        )
        duration = GaugeMetricFamily(
            "controlplane_check_duration_seconds", "How long the last run of each check took.",
            labels=["check"],
        )
        age = GaugeMetricFamily(
            "controlplane_check_age_seconds", "Seconds since each check last ran.", labels=["check"]
        )
        observed = GaugeMetricFamily(
            "controlplane_check_observed_value", "The value each check last observed.",
            labels=["check", "unit"],
        )
        for name, result in self.snapshot.results.items():
            for value in CHECK_STATUS_VALUES:
                status.add_metric([name, value], 1 if result.status == value else 0)
            duration.add_metric([name], result.duration_ms / 1000.0)
            if result.checked_at is not None:
                age.add_metric([name], result.age_s())
            if result.observed_value is not None:
                observed.add_metric([name, result.observed_unit or ""], result.observed_value)
        yield from (status, duration, age, observed)

        last_run = GaugeMetricFamily(
            "controlplane_job_last_run_timestamp_seconds", "When each job last finished.", labels=["job"]
        )
        last_success = GaugeMetricFamily(
            "controlplane_job_last_success_timestamp_seconds", "When each job last succeeded.",
            labels=["job"],
        )
        last_outcome = GaugeMetricFamily(
            "controlplane_job_last_run_success", "1 if the job's last run succeeded, else 0.",
            labels=["job"],
        )
        last_duration = GaugeMetricFamily(
            "controlplane_job_last_run_duration_seconds", "How long each job's last run took.",
            labels=["job"],
        )
        for summary in self.job_summaries:
            if summary.last_finished_at is not None:
                last_run.add_metric([summary.job_id], summary.last_finished_at.timestamp())
                last_outcome.add_metric([summary.job_id], 1 if summary.last_outcome == "success" else 0)
                last_duration.add_metric([summary.job_id], (summary.last_duration_ms or 0) / 1000.0)
            if summary.last_success_at is not None:
                last_success.add_metric([summary.job_id], summary.last_success_at.timestamp())
        yield from (last_run, last_success, last_outcome, last_duration)
        yield from self.extra_families


# A process serving its own registry elsewhere (the worker) leaves `<marker><pid>` beside its files.
OWN_TARGET_MARKER = "scraped-elsewhere-"


class WebProcessesCollector:
    """MultiProcessCollector's merge over the directory's files, minus those of processes that
    are scraped on a target of their own."""

    def __init__(self, directory: str):
        self.directory = directory

    def collect(self):
        elsewhere = {name[len(OWN_TARGET_MARKER):] for name in os.listdir(self.directory)
                     if name.startswith(OWN_TARGET_MARKER)}
        files = [path for path in glob.glob(os.path.join(self.directory, "*.db"))
                 if _pid_of(path) not in elsewhere]
        return MultiProcessCollector.merge(files, accumulate=True)


def _pid_of(path: str) -> str:
    """counter_123.db, gauge_livesum_123.db -> "123" (prometheus_client's file naming)."""
    return os.path.basename(path)[:-len(".db")].rsplit("_", 1)[-1]


def keep_out_of_web_merge() -> str | None:
    """Mark this process's multiprocess files, if it writes any, as scraped on its own target."""
    directory = multiprocess_dir()
    if not directory or not os.path.isdir(directory):
        return None
    marker = os.path.join(directory, f"{OWN_TARGET_MARKER}{os.getpid()}")
    open(marker, "w").close()
    return marker


def render_metrics(state_collector: StateCollector) -> tuple[bytes, str]:
    """The whole exposition: process metrics (merged across workers) plus shared state."""
    directory = multiprocess_dir()
    if directory:
        process_registry = CollectorRegistry()
        process_registry.register(WebProcessesCollector(directory))
    else:
        process_registry = REGISTRY
    state_registry = CollectorRegistry()
    state_registry.register(state_collector)
    return generate_latest(process_registry) + generate_latest(state_registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Called from gunicorn's child_exit so a dead worker's live gauges disappear."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
