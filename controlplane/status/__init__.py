"""The public status page (issue 6): component status from checks and live requests, and the
Statuspage-compatible JSON. Incidents, maintenance, the HTML page, feeds, badges and subscribers
build on it."""


def init_status(app) -> None:
    from . import models  # noqa: F401  (tables for metadata and migrations)
    from .cache import PublicCache
    from .api import bp as incidents_api
    from .api import maintenances, subscribers
    from .page import register as register_page
    from .views import bp, warn_without_public_url

    app.extensions["controlplane.status_cache"] = PublicCache(
        app.extensions["controlplane.settings"].status_cache_seconds)
    warn_without_public_url(app.extensions["controlplane.settings"])
    app.register_blueprint(bp)
    register_page(app)
    app.register_blueprint(incidents_api)
    app.register_blueprint(maintenances)
    app.register_blueprint(subscribers)
    from .notify import notification_families

    app.extensions.setdefault("controlplane.metric_sources", []).append(notification_families)
