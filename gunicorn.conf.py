"""gunicorn settings for the `web` process (see fly.toml and the README).

prometheus_client picks its storage when first imported, so PROMETHEUS_MULTIPROC_DIR is set here,
in the master, before any worker imports the app; the directory is emptied once at start-up.

Workers are gevent's: an open /api/v1/events stream is a greenlet, not one of a few request
threads, so streams cannot starve the API (docs/reliability.md, "Event streams"). The worker
monkey-patches the standard library before it imports the app, so threads (alert watcher, stats
flush, health refresh) become greenlets and psycopg2 waits through database.py's cooperative
callback. The app must therefore never be preloaded into the master.
"""
import os
import shutil
import tempfile
import time

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
wsgi_app = "controlplane.wsgi:app"
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
# Open connections one worker serves at once (API requests and event streams alike); keep it above
# EVENTS_STREAMS_MAX so streams at their cap leave room for the API.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))  # only for GUNICORN_WORKER_CLASS=gthread
preload_app = False
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
# X-Forwarded-Proto is believed from the proxies the app takes the client address from:
# TRUSTED_PROXIES, else Fly's proxy network on Fly (FLY_PROXY_NETWORKS in controlplane/proxies.py,
# repeated because importing the package here would load prometheus_client too early), else none.
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES") or ("172.16.0.0/16" if os.environ.get("FLY_APP_NAME") else "")

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


def post_request(worker, req, environ, resp):
    # Under gevent, a keep-alive connection whose next request has already arrived is read without
    # yielding, so one busy client could keep the worker to itself: measured, a 1.6 s p99 for a
    # constant route under wrk -c32 (18 ms with this yield). time.sleep is gevent's sleep here.
    time.sleep(0)
