"""The worker's own /metrics on WORKER_METRICS_PORT: what only a worker process counts.

Deliveries (`mailgoat_emails_sent_total`, `mailgoat_send_duration_seconds`, `mailgoat_retries_total`),
alert evaluation timings and the worker's connection pool live in the worker's memory, and the
web's /metrics cannot see them. The worker serves its process registry, from the same metric
definitions, and nothing else: shared state read from the database (checks, jobs, outbox, backups)
is the web's to serve, and serving it twice would double every sum.

`controlplane run` does not start this: web and worker share one process there, so its web
/metrics already holds the worker's series.
"""
from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, start_http_server

from .metrics import keep_out_of_web_merge

log = logging.getLogger(__name__)
LISTEN_ADDRESS = "0.0.0.0"  # like gunicorn's bind: Fly's scraper reaches the machine from outside


class WorkerMetricsServer:
    def __init__(self, httpd, marker: str | None):
        self.httpd = httpd
        self.marker = marker

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.marker:
            try:
                os.unlink(self.marker)
            except OSError:
                pass  # gunicorn empties the directory when it starts


def serve_worker_metrics(port: int) -> WorkerMetricsServer | None:
    """Serve this process's metrics on `port` (0: not at all). A port that cannot be bound is a
    one-line error in the log, never a reason to stop delivering mail."""
    if port == 0:
        log.info("worker metrics are off (WORKER_METRICS_PORT=0)")
        return None
    try:
        httpd, _thread = start_http_server(port, addr=LISTEN_ADDRESS, registry=REGISTRY)
    except (OSError, OverflowError) as exc:
        log.error("worker metrics: cannot listen on %s:%s (%s); this worker's metrics are not served",
                  LISTEN_ADDRESS, port, getattr(exc, "strerror", None) or exc)
        return None
    log.info("worker metrics on http://%s:%s/metrics", LISTEN_ADDRESS, port)
    return WorkerMetricsServer(httpd, keep_out_of_web_merge())
