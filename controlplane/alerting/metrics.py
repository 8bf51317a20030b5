"""What the rules measure, as metrics too: the Prometheus export and the dashboards read these."""
from __future__ import annotations

from prometheus_client import Counter

# Counted where evaluation runs (the leader worker, served on its own /metrics); every rule has a
# series from the first evaluation on, so a dashboard or rate() sees 0 rather than nothing.
RULE_ERRORS = Counter("controlplane_alert_rule_errors_total",
                      "Evaluations of an alert rule that failed (its indicator raised).", ["rule"])


def alerting_families():
    from flask import current_app
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import select

    from ..extensions import db
    from ..health.kinds.database import server_connections
    from ..jobs.records import live_worker_counts
    from .deployments import last_finished
    from .indicators import first_migrated_at, rules_in_error
    from .models import AlertState

    connections = GaugeMetricFamily("controlplane_db_connections", "Connections open on the PostgreSQL server.")
    limit = GaugeMetricFamily("controlplane_db_max_connections", "The PostgreSQL server's max_connections.")
    if db.engine.dialect.name == "postgresql":
        used, maximum = server_connections(db.session)
        connections.add_metric([], used)
        limit.add_metric([], maximum)
    yield connections
    yield limit

    failed = GaugeMetricFamily("controlplane_deployment_last_failed",
                               "1 if the newest finished deployment of this kind failed.", labels=["kind"])
    for kind in ("deploy", "migration"):
        newest = last_finished(kind)
        failed.add_metric([kind], 1.0 if newest is not None and newest.status == "failed" else 0.0)
    yield failed

    live, leading = live_worker_counts(current_app.extensions["controlplane.settings"].worker_stale_seconds)
    live_family = GaugeMetricFamily("controlplane_workers_live", "Workers with a fresh heartbeat.")
    live_family.add_metric([], live)
    yield live_family
    leading_family = GaugeMetricFamily("controlplane_workers_leading",
                                       "Workers with a fresh heartbeat holding the leader lock.")
    leading_family.add_metric([], leading)
    yield leading_family

    firing = GaugeMetricFamily("controlplane_alerts_firing", "1 for each alert rule that is firing.",
                               labels=["rule"])
    for rule in db.session.execute(select(AlertState.rule).where(AlertState.state == "firing")).scalars():
        firing.add_metric([rule], 1.0)
    yield firing

    rule_names = [rule.name for rule in current_app.extensions["controlplane.alert_rules"].rules]
    in_error = GaugeMetricFamily("controlplane_alert_rules_in_error",
                                 "Alert rules that cannot be evaluated (their indicator raised on the last pass).")
    in_error.add_metric([], float(rules_in_error(rule_names)))
    yield in_error

    installed = first_migrated_at()
    migrated = GaugeMetricFamily("controlplane_database_first_migrated_timestamp_seconds",
                                 "When this database was first migrated: a new install's backups are due from then.")
    if installed is not None:
        migrated.add_metric([], installed.timestamp())
    yield migrated
