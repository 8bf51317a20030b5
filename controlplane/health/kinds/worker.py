"""Worker: some worker process has written a heartbeat recently, and one of them leads."""
from sqlalchemy import select

from ...extensions import db
from ...jobs.models import WorkerHeartbeat
from ...timeutil import as_utc, utcnow
from . import CheckFailed, CheckKind, Metric, Observation


class WorkerCheck(CheckKind):
    name = "worker"
    metrics = {"heartbeat_age_s": Metric("s")}
    primary_metric = "heartbeat_age_s"

    def run(self, spec, ctx) -> Observation:
        with ctx.app.app_context():
            beats = db.session.execute(select(WorkerHeartbeat)).scalars().all()
            db.session.remove()
        if not beats:
            raise CheckFailed("no worker has ever reported: start `controlplane worker`")
        now = utcnow()
        ages = {beat.instance: (now - as_utc(beat.last_seen_at)).total_seconds() for beat in beats}
        freshest = min(ages.values())
        live = [b for b in beats if ages[b.instance] <= ctx.settings.worker_stale_seconds]
        leaders = [b.instance for b in live if b.is_leader]
        message = f"{len(live)} live worker(s), newest heartbeat {freshest:.0f}s ago"
        if live and not leaders:
            return Observation(values={"heartbeat_age_s": round(freshest, 1)}, at_most="degraded",
                               message=message + "; no leader holds the lock")
        if leaders:
            message += f"; leader {leaders[0]}"
        return Observation(values={"heartbeat_age_s": round(freshest, 1)}, message=message)
