"""`controlplane run`: the newcomer's one command. Web and worker in one process, no servers needed."""
from __future__ import annotations

import logging
import signal
import threading

import click
from werkzeug.serving import make_server

from .database import install_answer_deadline
from .jobs import Worker
from .schema import upgrade_database
from .settings import redact_url

log = logging.getLogger(__name__)


def serve(app, host: str, port: int) -> None:
    settings = app.extensions["controlplane.settings"]
    health = app.extensions["controlplane.health"]
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        upgrade_database()
    install_answer_deadline(settings)  # after the migration, whose statements may run long
    server = make_server(host, port, app, threaded=True)
    worker = Worker(app)
    worker.start()  # the worker's health refresh runs on a scheduler thread in this process

    def stop(signum, _frame):
        # SIGTERM drains like production (/ready turns 503 first); Ctrl-C stops at once.
        delay = settings.drain_seconds if signum == signal.SIGTERM else 0
        health.lifecycle.start_draining()
        threading.Timer(delay, server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(
        f"MailGoat control plane on http://{host}:{server.port}  "
        f"(database {redact_url(settings.database_url)}, backups in {settings.backup_dir}; "
        f"try /health, /metrics; Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    finally:
        worker.stop()
        try:
            app.extensions["controlplane.request_stats"].flush()
        except Exception as exc:
            log.warning("final request_stats flush failed: %s", exc)
        click.echo("stopped")
