"""What /health serves: the latest stored result of each check, never a live probe.

Results are read from `check_results` (the scheduled ones, written by whichever worker ran them;
a diagnostic `controlplane checks run` is stored as manual and never shown) and kept in memory
for HEALTH_CACHE_SECONDS. When the copy expires, one background thread re-reads it while
requests keep getting the previous copy, so a hanging database cannot hang /health. If the
re-read fails, this instance reports the database as unhealthy from its own point of view.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

from sqlalchemy import select

from ..extensions import db
from ..timeutil import utcnow
from .config import CheckSpec
from .models import SCHEDULED, CheckResult
from .runner import STATUS_RANK, CheckOutcome

log = logging.getLogger(__name__)
# How long the very first request waits for the first read before answering "unknown".
FIRST_READ_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class HealthSnapshot:
    results: dict[str, CheckOutcome] = field(default_factory=dict)
    read_error: str | None = None

    def current(self, specs: tuple[CheckSpec, ...]) -> dict[str, CheckOutcome]:
        """Each check's result, with stale ones and missing ones reported as unknown."""
        now = utcnow()
        view = {}
        for spec in specs:
            result = self.results.get(spec.name)
            if result is None:
                view[spec.name] = CheckOutcome(spec.name, "unknown", None, None, 0.0, None, "no result yet")
            elif result.age_s(now) > spec.stale_after:
                view[spec.name] = replace(result, status="unknown",
                                          message=f"stale: last ran {result.age_s(now):.0f}s ago ({result.message})")
            else:
                view[spec.name] = result
        return view


def overall_status(specs: tuple[CheckSpec, ...], view: dict[str, CheckOutcome]) -> str:
    """unhealthy when a hard check fails; degraded when anything else is wrong or unknown."""
    status = "healthy"
    for spec in specs:
        result = view[spec.name].status
        if spec.hard and result == "unhealthy":
            return "unhealthy"
        if STATUS_RANK[result] > 0:
            status = "degraded"
    return status


def ready_problem(specs: tuple[CheckSpec, ...], view: dict[str, CheckOutcome]) -> str | None:
    """Why this instance should not take traffic yet, or None when it should."""
    for spec in specs:
        if not spec.hard:
            continue
        result = view[spec.name]
        if result.checked_at is None:
            return f"initialising: no result yet for hard check {spec.name}"
        if result.status == "unhealthy":
            return f"hard check {spec.name} is unhealthy: {result.message}"
    return None


class HealthCache:
    def __init__(self, app, specs: tuple[CheckSpec, ...], ttl_seconds: float, database_check: str | None):
        self.app = app
        self.specs = specs
        self.ttl = ttl_seconds
        self.database_check = database_check
        self._snapshot = HealthSnapshot()
        self._loaded_at = float("-inf")
        self._refreshing: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, outcomes: list[CheckOutcome]) -> None:
        """Results just produced in this process (the embedded runner of `controlplane run`)."""
        with self._lock:
            merged = dict(self._snapshot.results)
            merged.update({o.name: o for o in outcomes})
            self._snapshot = HealthSnapshot(merged)
            self._loaded_at = time.monotonic()

    def get(self) -> HealthSnapshot:
        if self.ttl <= 0:
            self.refresh()  # caching disabled: every request reads the stored results
        elif time.monotonic() - self._loaded_at >= self.ttl:
            thread = self._start_refresh()
            if thread is not None and self._loaded_at == float("-inf"):
                thread.join(FIRST_READ_WAIT_SECONDS)
        return self._effective()

    def _effective(self) -> HealthSnapshot:
        snapshot = self._snapshot
        if snapshot.read_error and self.database_check:
            own_view = CheckOutcome(self.database_check, "unhealthy", None, None, 0.0, utcnow(),
                                    f"this instance cannot read the database: {snapshot.read_error}")
            return replace(snapshot, results={**snapshot.results, self.database_check: own_view})
        return snapshot

    def _start_refresh(self) -> threading.Thread | None:
        with self._lock:
            if self._refreshing is not None and self._refreshing.is_alive():
                return self._refreshing
            self._refreshing = threading.Thread(target=self.refresh, name="health-cache", daemon=True)
            self._refreshing.start()
            return self._refreshing

    def refresh(self) -> None:
        try:
            with self.app.app_context():
                results = {}
                for spec in self.specs:
                    row = db.session.execute(
                        select(CheckResult).where(CheckResult.check_name == spec.name,
                                                  CheckResult.source == SCHEDULED)
                        .order_by(CheckResult.checked_at.desc()).limit(1)
                    ).scalar_one_or_none()
                    if row is not None:
                        results[spec.name] = CheckOutcome.from_row(row)
                db.session.remove()
            snapshot = HealthSnapshot(results)
        except Exception as exc:
            log.warning("health cache refresh failed: %s: %s", type(exc).__name__, exc)
            snapshot = HealthSnapshot(self._snapshot.results, read_error=f"{type(exc).__name__}")
        with self._lock:
            self._snapshot = snapshot
            self._loaded_at = time.monotonic()
