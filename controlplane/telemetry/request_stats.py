"""Shared request statistics: every process flushes its counts into `request_stats`.

Recording is an in-memory dict update under a lock (cheap, on the request path). A daemon thread,
started lazily by the first recorded request (never by the app factory), flushes the accumulated
rows every REQUEST_STATS_FLUSH_SECONDS, and once more at exit.
"""
from __future__ import annotations

import atexit
import bisect
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete

from ..dbtypes import add_counts
from ..extensions import db
from ..timeutil import utcnow
from .metrics import LATENCY_BUCKETS
from .models import BUCKET_COLUMNS, RequestMinute, RequestStat

log = logging.getLogger(__name__)


@dataclass
class _Tally:
    count: int = 0
    duration_sum: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))


def status_class(status_code: int) -> str:
    return f"{status_code // 100}xx"


class RequestStatsRecorder:
    def __init__(self, app, flush_seconds: float, instance: str):
        self.app = app
        self.flush_seconds = flush_seconds
        self.instance = instance
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str, str], _Tally] = {}
        self._period_start = utcnow()
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._stop = threading.Event()

    def record(self, route: str, method: str, status_code: int, seconds: float) -> None:
        key = (route, method, status_class(status_code))
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally()
            tally.count += 1
            tally.duration_sum += seconds
            tally.buckets[index] += 1
        if self._thread_pid != os.getpid():
            self._start_flusher()

    def _start_flusher(self) -> None:
        # Checked per pid: a thread does not survive gunicorn's fork into a worker.
        with self._lock:
            if self._thread_pid == os.getpid():
                return
            self._thread_pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="request-stats-flush", daemon=True)
            self._thread.start()
            atexit.register(self._flush_at_exit)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # the flusher must outlive a database outage
                log.exception("request_stats flush failed; counts kept for the next attempt")

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception as exc:
            log.warning("request_stats: last flush at exit failed: %s", exc)

    def stop(self) -> None:
        """Stop the flusher thread and forget the exit flush (tests build many apps)."""
        self._stop.set()
        atexit.unregister(self._flush_at_exit)

    def flush(self) -> int:
        """Write what was recorded since the last flush; returns the number of rows written."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
            period_start, period_end = self._period_start, utcnow()
            self._period_start = period_end
        if not tallies:
            return 0
        instance = f"{self.instance}:{os.getpid()}"
        rows = [
            RequestStat(
                instance=instance, period_start=period_start, period_end=period_end,
                route=route, method=method, status_class=klass, count=t.count,
                duration_sum=t.duration_sum, bucket_counts=json.dumps(t.buckets),
            )
            for (route, method, klass), t in tallies.items()
        ]
        try:
            with self.app.app_context():
                db.session.add_all(rows)
                add_to_minute(period_end, [(tally, key[2]) for key, tally in tallies.items()])
                db.session.commit()
        except Exception:
            self._merge_back(tallies, period_start)
            raise
        return len(rows)

    def _merge_back(self, tallies: dict, period_start) -> None:
        with self._lock:
            for key, old in tallies.items():
                tally = self._tallies.setdefault(key, _Tally())
                tally.count += old.count
                tally.duration_sum += old.duration_sum
                tally.buckets = [a + b for a, b in zip(tally.buckets, old.buckets)]
            self._period_start = period_start


def add_to_minute(period_end, tallies) -> None:
    """Add a flush's counts, (tally, status class) pairs, to its minute's row, whichever instance
    got there first (an upsert)."""
    minute = period_end.replace(second=0, microsecond=0)
    totals = {"count": 0, "errors": 0, "duration_sum": 0.0, **{c: 0 for c in BUCKET_COLUMNS}}
    for tally, klass in tallies:
        totals["count"] += tally.count
        totals["duration_sum"] += tally.duration_sum
        if klass == "5xx":
            totals["errors"] += tally.count
        for column, value in zip(BUCKET_COLUMNS, tally.buckets):
            totals[column] += value
    if not totals["count"]:
        return
    add_counts(RequestMinute, {"minute": minute}, totals)


def prune_request_stats(retention_days: int) -> int:
    cutoff = utcnow() - timedelta(days=retention_days)
    deleted = db.session.execute(delete(RequestStat).where(RequestStat.period_end < cutoff)).rowcount
    db.session.execute(delete(RequestMinute).where(RequestMinute.minute < cutoff))
    db.session.commit()
    return deleted
