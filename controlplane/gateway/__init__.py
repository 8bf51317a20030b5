"""The MailGoat API: a gateway in front of Postal that existing MailGoat clients use unchanged."""


def init_gateway(app) -> None:
    from . import models  # noqa: F401  (tables for metadata and migrations)
    from ..events import models as _events  # noqa: F401
    from ..events.stream import bp as event_stream
    from ..events.views import bp as subscriber_webhooks
    from .postal_events import bp as postal_webhooks
    from .views import bp

    from ..postal import postal_client
    from .limits import init_limits

    # Made once per app (no threads, no connections yet): the limiter storage and Postal client.
    init_limits(app, app.extensions["controlplane.settings"])
    app.extensions["controlplane.postal"] = postal_client(app)
    app.register_blueprint(bp)
    app.register_blueprint(postal_webhooks)
    app.register_blueprint(subscriber_webhooks)
    app.register_blueprint(event_stream)

    from ..delivery.metrics import outbox_families

    app.extensions.setdefault("controlplane.metric_sources", []).append(outbox_families)
