"""Alerting: the alert engine completed an evaluation recently, a leader is alive to run the next
one, and every configured channel can get a page out (alerting/watchdog.py judges it).

Run by the worker like every check, and by each web process's watchdog (alerting/watcher.py),
so /health says "stalled" even when every worker is gone.
"""
from ...alerting.channels import probed_channel_problems
from ...alerting.watchdog import assess, record_channel_problems
from ...extensions import db
from . import CheckKind, Metric, Observation


class AlertingCheck(CheckKind):
    name = "alerting"
    metrics = {"evaluation_age_s": Metric("s")}
    primary_metric = "evaluation_age_s"

    def run(self, spec, ctx) -> Observation:
        problems = probed_channel_problems(ctx.settings, ctx.app.extensions["controlplane.alert_rules"])
        with ctx.app.app_context():
            try:
                view = assess(ctx.settings, problems)
                record_channel_problems(problems)
            finally:
                db.session.remove()
        return Observation(values={"evaluation_age_s": round(view.age_seconds, 1)}, message=view.message(),
                           at_most=view.worst)
