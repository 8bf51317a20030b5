"""What the rules measure, as metrics too: the Prometheus export and the dashboards read these."""
from __future__ import annotations


def alerting_families():
    from datetime import timedelta

    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import func, select, text

    from ..extensions import db
    from ..jobs.models import WorkerHeartbeat
    from ..timeutil import utcnow
    from .models import AlertState, Deployment

    connections = GaugeMetricFamily("controlplane_db_connections", "Connections open on the PostgreSQL server.")
    limit = GaugeMetricFamily("controlplane_db_max_connections", "The PostgreSQL server's max_connections.")
    if db.engine.dialect.name == "postgresql":
        used, maximum = db.session.execute(text(
            "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity")).one()
        connections.add_metric([], used)
        limit.add_metric([], maximum)
    yield connections
    yield limit

    failed = GaugeMetricFamily("controlplane_deployment_last_failed",
                               "1 if the newest finished deployment of this kind failed.", labels=["kind"])
    for kind in ("deploy", "migration"):
        status = db.session.execute(
            select(Deployment.status).where(Deployment.kind == kind, Deployment.status.in_(("succeeded", "failed")))
            .order_by(Deployment.finished_at.desc()).limit(1)).scalar_one_or_none()
        failed.add_metric([kind], 1.0 if status == "failed" else 0.0)
    yield failed

    from flask import current_app

    stale = current_app.extensions["controlplane.settings"].worker_stale_seconds
    fresh = WorkerHeartbeat.last_seen_at > utcnow() - timedelta(seconds=stale)
    live = GaugeMetricFamily("controlplane_workers_live", "Workers with a fresh heartbeat.")
    live.add_metric([], db.session.execute(select(func.count()).select_from(WorkerHeartbeat).where(fresh)).scalar_one())
    yield live
    leading = GaugeMetricFamily("controlplane_workers_leading", "Workers with a fresh heartbeat holding the leader lock.")
    leading.add_metric([], db.session.execute(select(func.count()).select_from(WorkerHeartbeat)
                                              .where(fresh, WorkerHeartbeat.is_leader.is_(True))).scalar_one())
    yield leading

    firing = GaugeMetricFamily("controlplane_alerts_firing", "1 for each alert rule that is firing.",
                               labels=["rule"])
    for rule in db.session.execute(select(AlertState.rule).where(AlertState.state == "firing")).scalars():
        firing.add_metric([rule], 1.0)
    yield firing
