"""Runs every due check in parallel, each bounded by its own timeout, and stores the results.

A check that hangs is reported unhealthy when its timeout passes; its thread is left to finish on
its own and the check is not started again until it has, so a dependency that never answers
costs one thread, not one per round.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import delete

from ..dbtypes import add_counts
from ..extensions import db
from ..timeutil import as_utc, utcnow
from .config import CheckSpec
from .kinds import KINDS, CheckFailed, Observation
from .models import SCHEDULED, CheckDay, CheckResult

log = logging.getLogger(__name__)

HISTORY_DAYS = 90
STATUS_RANK = {"healthy": 0, "unconfigured": 0, "degraded": 1, "unknown": 1, "unhealthy": 2}


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    status: str
    observed_value: float | None
    observed_unit: str | None
    duration_ms: float
    checked_at: datetime | None  # None: the check has never produced a result
    message: str

    def age_s(self, now: datetime | None = None) -> float | None:
        if self.checked_at is None:
            return None
        return max(0.0, ((now or utcnow()) - as_utc(self.checked_at)).total_seconds())

    @classmethod
    def from_row(cls, row: CheckResult) -> "CheckOutcome":
        return cls(row.check_name, row.status, row.observed_value, row.observed_unit,
                   row.duration_ms, as_utc(row.checked_at), row.message or "")


@dataclass
class CheckContext:
    """What kinds may use: the app (for app contexts), its engine, settings and HTTP client."""

    app: object
    engine: object
    settings: object
    http: object


def judge(spec: CheckSpec, observation: Observation) -> tuple[str, float | None, str | None]:
    """Status from thresholds; the observed value reported is the one that decided it."""
    kind = KINDS[spec.kind]
    if observation.status is not None:
        return observation.status, None, None
    status, deciding = "healthy", kind.primary_metric
    for metric, threshold in spec.thresholds.items():
        value = observation.values.get(metric)
        if value is None:
            continue
        worse = (lambda v, t: v >= t) if kind.metrics[metric].worse_when == "above" else (lambda v, t: v <= t)
        level = ("unhealthy" if threshold.fail is not None and worse(value, threshold.fail) else
                 "degraded" if threshold.warn is not None and worse(value, threshold.warn) else "healthy")
        if STATUS_RANK[level] > STATUS_RANK[status]:
            status, deciding = level, metric
    if observation.at_most and STATUS_RANK[observation.at_most] > STATUS_RANK[status]:
        status = observation.at_most
    value = observation.values.get(deciding) if deciding else None
    unit = kind.metrics[deciding].unit if deciding and value is not None else None
    return status, value, unit


class CheckRunner:
    """`source` says what its results count for: SCHEDULED (the worker's) feed /health and uptime
    history; MANUAL (a diagnostic run from the CLI) are stored for the record and nothing else, so
    a run with a wrong setting cannot write a public day of downtime (models.MANUAL)."""

    def __init__(self, ctx: CheckContext, specs: tuple[CheckSpec, ...], instance: str, source: str = SCHEDULED):
        self.ctx = ctx
        self.specs = specs
        self.instance = instance
        self.source = source
        self._executor = ThreadPoolExecutor(max_workers=2 * len(specs) + 1, thread_name_prefix="check")
        self._in_flight: dict[str, tuple[Future, float]] = {}
        self._last_started: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, now: float) -> list[CheckSpec]:
        return [s for s in self.specs if now - self._last_started.get(s.name, -1e18) >= s.interval]

    def run(self, force: bool = False) -> list[CheckOutcome]:
        """Run the due checks (all when forced) in parallel; store and return their outcomes."""
        with self._lock:
            now = time.monotonic()
            specs = self.specs if force else self.due(now)
            started = {}
            outcomes = []
            for spec in specs:
                self._last_started[spec.name] = now
                previous = self._in_flight.get(spec.name)
                if previous is not None and not previous[0].done():
                    outcomes.append(self._outcome(spec, "unhealthy", None, None, time.monotonic() - previous[1],
                                                  f"still running after {time.monotonic() - previous[1]:.0f}s; not restarted"))
                    continue
                future = self._executor.submit(self._observe, spec)
                self._in_flight[spec.name] = (future, now)
                started[spec.name] = (spec, future)
            for spec, future in started.values():
                remaining = spec.timeout - (time.monotonic() - now)
                try:
                    status, value, unit, message, seconds = future.result(timeout=max(remaining, 0))
                except FutureTimeout:
                    outcomes.append(self._outcome(spec, "unhealthy", None, None, spec.timeout,
                                                  f"timed out after {spec.timeout:g}s"))
                    continue
                outcomes.append(self._outcome(spec, status, value, unit, seconds, message))
        self._store(outcomes)
        return outcomes

    def _observe(self, spec: CheckSpec):
        started = time.perf_counter()
        try:
            observation = KINDS[spec.kind].run(spec, self.ctx)
            status, value, unit = judge(spec, observation)
            message = observation.message
        except CheckFailed as exc:
            status, value, unit, message = "unhealthy", None, None, str(exc)
        except Exception as exc:  # a bug in a kind must not take health reporting down with it
            log.exception("check %s crashed", spec.name)
            status, value, unit, message = "unhealthy", None, None, f"check crashed: {type(exc).__name__}: {exc}"
        return status, value, unit, message, time.perf_counter() - started

    def _outcome(self, spec, status, value, unit, seconds, message) -> CheckOutcome:
        return CheckOutcome(spec.name, status, value, unit, round(seconds * 1000, 2), utcnow(), message)

    def _store(self, outcomes: list[CheckOutcome]) -> None:
        if not outcomes:
            return
        try:
            with self.ctx.app.app_context():
                store_outcomes(outcomes, self.instance, self.source)
        except Exception as exc:
            # The database check reports the outage; here we only avoid dying of it.
            log.warning("could not store check results: %s: %s", type(exc).__name__, exc)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def store_outcomes(outcomes: list[CheckOutcome], instance: str, source: str = SCHEDULED) -> None:
    """The raw results (the shared cache, 14 days) and, for scheduled runs only, their daily counts,
    in one transaction."""
    db.session.add_all(CheckResult(
        check_name=o.name, status=o.status, observed_value=o.observed_value, observed_unit=o.observed_unit,
        duration_ms=o.duration_ms, checked_at=o.checked_at, message=o.message[:2000], instance=instance,
        source=source,
    ) for o in outcomes)
    if source == SCHEDULED:
        add_to_days(outcomes)
    db.session.commit()


def add_to_days(outcomes: list[CheckOutcome]) -> None:
    """Count each outcome into its check's UTC day (check_days), in the results' transaction."""
    days: dict[tuple[str, date], dict[str, int]] = {}
    for o in outcomes:
        if o.status == "unconfigured":  # not probed at all: no evidence either way
            continue
        counts = days.setdefault((o.name, as_utc(o.checked_at).date()), {"total": 0, "unhealthy": 0, "degraded": 0})
        counts["total"] += 1
        if o.status in ("unhealthy", "degraded"):
            counts[o.status] += 1
    for (name, day), counts in days.items():
        add_counts(CheckDay, {"check_name": name, "day": day}, counts)


def prune_check_results(retention_days: int) -> int:
    cutoff = utcnow() - timedelta(days=retention_days)
    deleted = db.session.execute(delete(CheckResult).where(CheckResult.checked_at < cutoff)).rowcount
    # The daily counts outlive the raw results: the status page shows HISTORY_DAYS of them.
    db.session.execute(delete(CheckDay).where(CheckDay.day < (utcnow() - timedelta(days=HISTORY_DAYS + 1)).date()))
    db.session.commit()
    return deleted
