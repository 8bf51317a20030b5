"""The MailGoat API: a gateway in front of Postal that existing MailGoat clients use unchanged."""


def init_gateway(app) -> None:
    from . import models  # noqa: F401  (tables for metadata and migrations)
    from .views import bp

    app.register_blueprint(bp)
