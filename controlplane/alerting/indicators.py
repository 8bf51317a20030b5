"""Indicators: what a rule measures. Contract (`Indicator`):

    name                        the `indicator:` in rules.yaml
    params                      {param: (type, default)}; a default of REQUIRED must be given
    measure(params, ctx)        the value now, None when there is no data, or STARTING_UP when
                                a new install is too young to judge (the rule's state holds)

Everything is read from shared tables (request_minutes, check_results, worker_heartbeats, the
backup catalog, deployments) or the database server, so any instance evaluates the same values.
Registry: INDICATORS.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text

from ..extensions import db
from ..timeutil import as_utc

REQUIRED = object()
STARTING_UP = object()  # a measurement that says "too early to judge either way"


@dataclass
class Context:
    now: datetime
    settings: object
    rule_names: tuple[str, ...] = ()  # the rules this pass evaluates


class Indicator:
    name = ""
    params: dict = {}

    def validate(self, params: dict) -> dict:
        from .rules import parse_duration

        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))} for {self.name}")
        out = {}
        for name, (kind, default) in self.params.items():
            value = params.get(name, default)
            if value is REQUIRED:
                raise ValueError(f"{name} is required for {self.name}")
            if kind == "duration":
                out[name] = value
                out[f"{name}_seconds"] = parse_duration(value, name)
            elif kind is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{name} must be a number")
                out[name] = float(value)
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{name} must be a whole number")
                out[name] = value
            else:
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{name} must be a non-empty string")
                out[name] = value
        return out

    def measure(self, params: dict, ctx: Context) -> float | None:  # pragma: no cover - contract
        raise NotImplementedError


def _window(ctx: Context, seconds: int):
    """The minute rows that started in the last `seconds`, the current (partial) minute included:
    windows are whole minutes, which is the precision rules are written in."""
    from ..telemetry.models import RequestMinute

    return RequestMinute.minute > ctx.now - timedelta(seconds=seconds), RequestMinute.minute <= ctx.now


def _request_totals(ctx: Context, seconds: int) -> tuple[int, int]:
    """(all requests, 5xx requests) over the last `seconds`, from every instance."""
    from ..telemetry.models import RequestMinute

    total, errors = db.session.execute(
        select(func.coalesce(func.sum(RequestMinute.count), 0), func.coalesce(func.sum(RequestMinute.errors), 0))
        .where(*_window(ctx, seconds))
    ).one()
    return int(total), int(errors)


class HttpErrorRatio(Indicator):
    name = "http_error_ratio"
    params = {"window": ("duration", "5m"), "min_requests": (int, 0)}

    def measure(self, params, ctx):
        total, errors = _request_totals(ctx, params["window_seconds"])
        if total == 0 or total < params["min_requests"]:
            return None  # too little traffic to judge: the rule's no_data decides
        return errors / total


class SlowRequestRatio(Indicator):
    """The share of requests slower than `seconds` (a bucket edge): above 5% means p95 > seconds."""

    name = "slow_request_ratio"
    params = {"window": ("duration", "5m"), "seconds": (float, 2.0), "min_requests": (int, 0)}

    def validate(self, params):
        from ..telemetry.metrics import LATENCY_BUCKETS

        out = super().validate(params)
        if out["seconds"] not in LATENCY_BUCKETS:
            raise ValueError(f"seconds must be a latency bucket edge ({', '.join(map(str, LATENCY_BUCKETS))})")
        return out

    def measure(self, params, ctx):
        from ..telemetry.metrics import LATENCY_BUCKETS
        from ..telemetry.models import BUCKET_COLUMNS, RequestMinute

        fast_edges = LATENCY_BUCKETS.index(params["seconds"]) + 1  # buckets at or under the edge
        slower = [func.coalesce(func.sum(getattr(RequestMinute, c)), 0) for c in BUCKET_COLUMNS[fast_edges:]]
        total, *slow = db.session.execute(
            select(func.coalesce(func.sum(RequestMinute.count), 0), *slower).where(*_window(ctx, params["window_seconds"]))
        ).one()
        if total == 0 or total < params["min_requests"]:
            return None
        return sum(slow) / total


class BurnRate(Indicator):
    """Multi-window burn rate: the lower of the long- and short-window error ratios, divided by the
    error budget (1 - objective). Both windows must burn, so it fires fast and resolves fast."""

    name = "burn_rate"
    params = {"objective": (float, REQUIRED), "long_window": ("duration", REQUIRED),
              "short_window": ("duration", REQUIRED), "min_requests": (int, 0)}

    def measure(self, params, ctx):
        budget = 1 - params["objective"]
        rates = []
        for window in ("long_window_seconds", "short_window_seconds"):
            total, errors = _request_totals(ctx, params[window])
            if total == 0 or total < params["min_requests"]:
                return None
            rates.append(errors / total / budget)
        return min(rates)


class DbConnectionsRatio(Indicator):
    name = "db_connections_ratio"

    def measure(self, params, ctx):
        from ..health.kinds.database import server_connections

        if db.engine.dialect.name != "postgresql":
            return None
        used, limit = server_connections(db.session)
        return used / limit if limit else None


class PoolSaturation(Indicator):
    """Connections each instance (application_name) holds, over one pool's capacity: 1.0 means a
    process of that instance has every pooled and overflow connection checked out (or several
    processes share the load)."""

    name = "pool_saturation"

    def measure(self, params, ctx):
        if db.engine.dialect.name != "postgresql":
            return None
        capacity = ctx.settings.db_pool_size + ctx.settings.db_max_overflow
        busiest = db.session.execute(text(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE application_name LIKE 'controlplane:%' AND state <> 'idle' GROUP BY application_name) AS per_instance"
        )).scalar_one()
        return (busiest or 0) / capacity if capacity else None


def first_migrated_at() -> datetime | None:
    """When this database was first migrated (the `installation` row, migration 0020)."""
    from .models import Installation

    found = db.session.execute(select(Installation.first_migrated_at)).scalars().first()
    return None if found is None else as_utc(found)


class BackupAgeHours(Indicator):
    """Hours since the later of the newest succeeded backup of `kind` and the first migration plus
    `grace`: a new install is not late until `grace` plus the threshold have passed. `kind: full`
    counts every backup that is a whole copy (`full_copy`: full, manual and pre-migration)."""

    name = "backup_age_hours"
    params = {"kind": (str, "full"), "grace": ("duration", "0s")}

    def validate(self, params):
        from ..backups.models import KINDS

        out = super().validate(params)
        if out["kind"] not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        return out

    def measure(self, params, ctx):
        from ..backups.status import latest, latest_full

        newest = latest_full() if params["kind"] == "full" else latest(params["kind"])
        installed = first_migrated_at()
        due_from = [as_utc(newest.finished_at)] if newest is not None else []
        if installed is not None:
            due_from.append(installed + timedelta(seconds=params["grace_seconds"]))
        if not due_from:
            return None
        return max(0.0, (ctx.now - max(due_from)).total_seconds() / 3600)


class RestoreDrillFailed(Indicator):
    name = "restore_drill_failed"

    def measure(self, params, ctx):
        from ..backups.status import latest_drill

        drill = latest_drill()
        return None if drill is None else (0.0 if drill.ok else 1.0)


class DeploymentFailed(Indicator):
    """1 when the newest recorded deployment (or migration) of that kind failed."""

    name = "deployment_failed"
    params = {"kind": (str, "deploy")}

    def measure(self, params, ctx):
        from .deployments import last_finished

        newest = last_finished(params["kind"])
        return None if newest is None else (1.0 if newest.status == "failed" else 0.0)


class OutboxOldestAge(Indicator):
    name = "outbox_oldest_age_seconds"

    def measure(self, params, ctx):
        from ..gateway.models import Message

        oldest = db.session.execute(
            select(func.min(Message.next_attempt_at)).where(Message.state.in_(("queued", "retrying")),
                                                            Message.next_attempt_at <= ctx.now)).scalar_one()
        return 0.0 if oldest is None else (ctx.now - as_utc(oldest)).total_seconds()


class StatusNotifyBacklog(Indicator):
    name = "status_notify_backlog_seconds"

    def measure(self, params, ctx):
        from ..status.notify import notify_backlog_seconds

        return notify_backlog_seconds(ctx.now)


class CheckUnhealthy(Indicator):
    """1 when the newest result of a health check is unhealthy; no data when it never ran lately."""

    name = "check_unhealthy"
    params = {"check": (str, REQUIRED), "max_age": ("duration", "5m")}

    def measure(self, params, ctx):
        from ..health.models import SCHEDULED, CheckResult

        # Only the worker's scheduled runs judge a dependency: a diagnostic `checks run` from the
        # CLI (with a wrong URL, say) must not page.
        newest = db.session.execute(
            select(CheckResult.status).where(CheckResult.check_name == params["check"], CheckResult.source == SCHEDULED,
                                             CheckResult.checked_at > ctx.now - timedelta(seconds=params["max_age_seconds"]))
            .order_by(CheckResult.checked_at.desc()).limit(1)).scalar_one_or_none()
        return None if newest is None else (1.0 if newest == "unhealthy" else 0.0)


class LiveWorkers(Indicator):
    """Workers with a fresh heartbeat. On a new install that no worker has joined yet, for
    `startup_grace` after the first migration, it is too early to judge (a worker still booting
    is not a dead one); after that, none is none."""

    name = "live_workers"
    params = {"startup_grace": ("duration", "10m")}
    leaders_only = False

    def measure(self, params, ctx):
        from ..jobs.models import WorkerHeartbeat
        from ..jobs.records import live_worker_counts

        live, leading = live_worker_counts(ctx.settings.worker_stale_seconds, ctx.now)
        count = leading if self.leaders_only else live
        if count == 0 and db.session.execute(select(WorkerHeartbeat.instance).limit(1)).first() is None:
            installed = first_migrated_at()
            if installed is not None and ctx.now - installed < timedelta(seconds=params["startup_grace_seconds"]):
                return STARTING_UP
        return float(count)


class LiveLeaders(LiveWorkers):
    name = "live_leaders"
    leaders_only = True


def rules_in_error(rule_names) -> int:
    """How many of these alert rules cannot be evaluated (their indicator raised on their last
    pass); a rule since removed from the file no longer counts."""
    from .models import AlertState

    return db.session.execute(select(func.count()).select_from(AlertState).where(
        AlertState.error.is_not(None), AlertState.rule.in_(list(rule_names)))).scalar_one()


class RulesInError(Indicator):
    name = "rules_in_error"

    def measure(self, params, ctx):
        return float(rules_in_error(ctx.rule_names))


INDICATORS = {cls.name: cls() for cls in (
    HttpErrorRatio, SlowRequestRatio, BurnRate, DbConnectionsRatio, PoolSaturation, BackupAgeHours,
    RestoreDrillFailed, DeploymentFailed, OutboxOldestAge, StatusNotifyBacklog, CheckUnhealthy, LiveWorkers,
    LiveLeaders, RulesInError)}
