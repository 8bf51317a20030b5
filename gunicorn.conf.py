"""gunicorn settings for the `web` process (see fly.toml and the README).

prometheus_client picks its storage when first imported, so PROMETHEUS_MULTIPROC_DIR is set here,
in the master, before any worker imports the app; the directory is emptied once at start-up.
"""
import os
import shutil
import tempfile

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
wsgi_app = "controlplane.wsgi:app"
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Requests in flight get this long after SIGTERM; fly.toml's kill_timeout must be longer.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
access_log_format = (
    '{"ts":"%(t)s","level":"INFO","logger":"gunicorn.access","method":"%(m)s","path":"%(U)s",'
    '"status":%(s)s,"duration_ms":%(M)s,"bytes":"%(B)s","request_id":"%({x-request-id}o)s",'
    '"remote":"%(h)s","user_agent":"%(a)s"}'
)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"controlplane-metrics-{os.getpid()}")
)


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)


def _extension(worker, name):
    # Benchmarks serve other apps with this same config, so every hook tolerates their absence.
    return getattr(getattr(worker, "wsgi", None), "extensions", {}).get(name)


def post_worker_init(worker):
    # /ready turns 503 as soon as this worker is told to stop, before it finishes in-flight requests.
    health = _extension(worker, "controlplane.health")
    if health:
        health.lifecycle.chain_sigterm()
    # Watches the alert engine from every web process (pages AlertingStalled when it stops).
    watcher = _extension(worker, "controlplane.alert_watcher")
    if watcher:
        watcher.start()


def worker_exit(server, worker):
    stats = _extension(worker, "controlplane.request_stats")
    if stats:
        try:
            stats.flush()
        except Exception as exc:  # the database may be the reason we are going down
            server.log.warning("final request_stats flush failed: %s", exc)


def child_exit(server, worker):
    from controlplane.telemetry.metrics import mark_process_dead

    mark_process_dead(worker.pid)
