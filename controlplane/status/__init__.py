"""The public status page (issue 6): component status from checks and live requests, and the
Statuspage-compatible JSON. Incidents, maintenance, the HTML page, feeds, badges and subscribers
build on it."""


def init_status(app) -> None:
    from . import models  # noqa: F401  (tables for metadata and migrations)
    from .api import bp as incidents_api
    from .api import maintenances
    from .views import bp

    app.register_blueprint(bp)
    app.register_blueprint(incidents_api)
    app.register_blueprint(maintenances)
