"""/metrics in the Prometheus text format."""
from flask import Blueprint, Response, current_app

from ..jobs import RECORDED_JOB_IDS
from ..jobs.records import job_summaries
from ..version import COMMIT, VERSION
from .metrics import StateCollector, render_metrics
from .traffic import probe

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@probe
def metrics():
    settings = current_app.extensions["controlplane.settings"]
    health = current_app.extensions["controlplane.health"]
    try:
        summaries = job_summaries(list(RECORDED_JOB_IDS))
        extra = [family for source in current_app.extensions.get("controlplane.metric_sources", [])
                 for family in source()]
    except Exception:
        # A database outage must not blank the scrape: process metrics still matter most then.
        summaries, extra = [], []
    collector = StateCollector(
        snapshot=health.cache.get(),
        job_summaries=summaries,
        build={"version": VERSION, "commit": COMMIT, "environment": settings.env},
        extra_families=extra,
    )
    body, content_type = render_metrics(collector)
    return Response(body, content_type=content_type)
