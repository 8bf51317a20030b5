"""The MailGoat control plane: one Flask service.

`create_app()` builds the app from the environment. It never starts a thread or a scheduler:
every `controlplane` command builds an app, including the migration Fly runs before a deploy.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

from flask import Flask
from sqlalchemy import event

from .errors import register_error_handlers
from .extensions import db, migrate
from .alerting import init_alerting
from .alerting.channels import init_channels
from .alerting.watcher import init_watcher
from .backups import init_backups
from .database import service_connect_args
from .status import init_status
from .gateway import init_gateway
from .gateway.params import BoundedIntConverter
from .health import init_health
from .health.config import load_checks
from .lifecycle import Lifecycle
from .proxies import ClientAddress
from .settings import Settings
from .telemetry import init_telemetry
from .telemetry.logging import configure_logging

log = logging.getLogger(__name__)


def create_app(overrides: Mapping[str, str] | None = None, *, span_exporter=None, span_processor=None,
               sentry_transport=None) -> Flask:
    """Build the app. `overrides` are environment variables layered over os.environ; the keyword
    arguments let tests and benchmarks receive spans and Sentry events without a network."""
    settings = Settings.from_env({**os.environ, **(overrides or {})})
    configure_logging(settings.log_level)
    for name in settings.generated_secrets:
        log.warning("%s is not set: using a generated development value kept in %s",
                    name, settings.data_dir / ".dev-secrets.json")
    checks = load_checks(settings.checks_file)

    app = Flask(__name__)
    # Before any blueprint adds a rule: every `<int:...>` id is bounded to PostgreSQL's BIGINT.
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings),
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
    )
    app.json.sort_keys = False
    app.extensions["controlplane.settings"] = settings
    # Innermost of the WSGI wrappers, so everything inside Flask sees the client behind a proxy.
    app.wsgi_app = ClientAddress(app.wsgi_app, settings.trusted_proxies, settings.client_address_header)
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(settings.migrations_dir), render_as_batch=True)
    with app.app_context():
        engine = db.engine
    if settings.is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)

    init_telemetry(app, settings, engine, span_exporter=span_exporter, span_processor=span_processor,
                   sentry_transport=sentry_transport)
    register_error_handlers(app, settings.max_request_bytes)
    init_health(app, settings, checks, Lifecycle())
    init_gateway(app)
    init_backups(app)
    init_alerting(app)
    init_channels(app)
    init_watcher(app)  # started by gunicorn.conf.py, never here
    init_status(app)
    _import_models()
    return app


def engine_options(settings: Settings) -> dict:
    # SQLAlchemy's error text would otherwise list the row's values (bodies, recipients) in logs.
    hidden = {"hide_parameters": True}
    if settings.is_sqlite:
        # A busy timeout instead of "database is locked" when web and worker write at once.
        return {**hidden, "connect_args": {"timeout": 15}, "pool_pre_ping": True}
    return {**hidden,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        "pool_recycle": settings.db_pool_recycle,
        "pool_pre_ping": True,
        "connect_args": service_connect_args(settings, f"controlplane:{settings.instance_id}"),
    }


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _import_models() -> None:
    """Every model module, so metadata (and Alembic autogenerate) sees every table."""
    from .gateway import models as _gateway  # noqa: F401
    from .health import models as _health  # noqa: F401
    from .jobs import models as _jobs  # noqa: F401
    from .telemetry import models as _telemetry  # noqa: F401
