"""The alert engine: rules (alerts/rules.yaml), indicators over shared tables, a persisted state
machine evaluated by the leader. Notifiers, silences and the Prometheus export build on it."""


def init_alerting(app) -> None:
    from . import models  # noqa: F401  (tables for metadata and migrations)
    from .rules import load_rules
    from .views import bp, silences_bp

    settings = app.extensions["controlplane.settings"]
    # Loaded (and so validated) at start-up: a broken rules file fails loudly, not at 3 a.m.
    app.extensions["controlplane.alert_rules"] = load_rules(settings.alert_rules_file,
                                                            runbook_base=settings.alert_runbook_base_url)
    app.register_blueprint(bp)
    from . import engine  # noqa: F401  (its evaluation-time histogram)
    from .metrics import alerting_families

    app.extensions.setdefault("controlplane.metric_sources", []).append(alerting_families)
    app.register_blueprint(silences_bp)
