"""The web process's watchdog loop: a daemon thread, started from gunicorn's post_worker_init
(never by the app factory, never APScheduler), that every tick takes the shared lease and, when
it got it, runs the `alerting` health check (stored like the worker's, so every instance's
/health shows it) and pages or resolves AlertingStalled (watchdog.py).

Bounded: one thread per process, each step inside the check's timeout or PagerDuty's; requests
never wait on it. N web processes tick at the pace of one (the lease), so they send one event per
state change between them, not one per instance per tick.
"""
from __future__ import annotations

import logging
import os
import threading

from ..extensions import db
from ..health.runner import CheckContext, CheckRunner
from ..outbound import http_client
from ..timeutil import utcnow
from .watchdog import claim_tick, page_if_stalled, watchdog_families

log = logging.getLogger("controlplane.alerting")
MAX_TICK_SECONDS = 15.0


class Watcher:
    def __init__(self, app):
        self.app = app
        self.settings = app.extensions["controlplane.settings"]
        # Four looks per bound: a stall is paged within ALERT_WATCHDOG_SECONDS plus one tick.
        self.tick_seconds = max(1.0, min(MAX_TICK_SECONDS, self.settings.alert_watchdog_seconds / 4))
        self._runner: CheckRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._stop = threading.Event()

    @property
    def instance(self) -> str:
        return f"{self.settings.instance_id}:web:{os.getpid()}"

    def start(self) -> None:
        """Start the loop in this process (again after a fork: threads do not survive one)."""
        if self._thread_pid == os.getpid():
            return
        self._thread_pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alert-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            self._runner.shutdown()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception as exc:  # a database outage: one line per tick, and the next tick tries again
                log.warning("alert watchdog tick failed: %s: %s", type(exc).__name__,
                            (str(exc).splitlines() or [""])[0])

    def tick(self, now=None) -> bool:
        """One look, if this instance holds the lease for it; returns whether it did."""
        now = now or utcnow()
        with self.app.app_context():
            try:
                if not claim_tick(self.instance, now, self.tick_seconds):
                    return False
                outcomes = self._check_runner().run(force=True)
                self.app.extensions["controlplane.health"].cache.put(outcomes)
                page_if_stalled(self.app, self.settings, now)
                return True
            finally:
                db.session.remove()

    def _check_runner(self) -> CheckRunner:
        if self._runner is None:
            specs = tuple(spec for spec in self.app.extensions["controlplane.health"].specs if spec.kind == "alerting")
            ctx = CheckContext(app=self.app, engine=db.engine, settings=self.settings, http=http_client(self.app))
            self._runner = CheckRunner(ctx, specs, self.instance)
        return self._runner


def init_watcher(app) -> Watcher:
    """The app's watcher, not started: gunicorn.conf.py starts it in each web worker process."""
    watcher = Watcher(app)
    app.extensions["controlplane.alert_watcher"] = watcher
    app.extensions.setdefault("controlplane.metric_sources", []).append(watchdog_families)
    return watcher
