"""Health aggregation: checks declared in checks/checks.yaml, run by the worker, served from cache."""
from __future__ import annotations

from dataclasses import dataclass

from ..extensions import db
from ..lifecycle import Lifecycle
from ..outbound import http_client
from .cache import HealthCache
from .config import ChecksConfig
from .runner import CheckContext, CheckRunner
from .models import SCHEDULED


@dataclass
class HealthState:
    config: ChecksConfig
    cache: HealthCache
    lifecycle: Lifecycle
    # (snapshot, second, body, status) of the last /health rendering; see views.health.
    rendered_health: tuple | None = None

    @property
    def specs(self):
        return self.config.checks

    @property
    def tick_seconds(self) -> float:
        """How often the worker looks for due checks: the shortest interval."""
        return min(spec.interval for spec in self.specs)

    def make_runner(self, app, instance: str, source: str = SCHEDULED) -> CheckRunner:
        with app.app_context():
            engine = db.engine
        settings = app.extensions["controlplane.settings"]
        ctx = CheckContext(app=app, engine=engine, settings=settings, http=http_client(app))
        return CheckRunner(ctx, self.specs, instance, source)


def init_health(app, settings, config: ChecksConfig, lifecycle: Lifecycle) -> HealthState:
    from .views import bp

    database_check = next((spec.name for spec in config.checks if spec.kind == "database"), None)
    cache = HealthCache(app, config.checks, settings.health_cache_seconds, database_check)
    state = HealthState(config=config, cache=cache, lifecycle=lifecycle)
    app.extensions["controlplane.health"] = state
    app.register_blueprint(bp)
    return state
