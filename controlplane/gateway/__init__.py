"""The MailGoat API: a gateway in front of Postal that existing MailGoat clients use unchanged."""


def init_gateway(app) -> None:
    from . import models  # noqa: F401  (tables for metadata and migrations)
    from .postal_events import bp as postal_webhooks
    from .views import bp

    app.register_blueprint(bp)
    app.register_blueprint(postal_webhooks)
