"""What every `controlplane` command group shares: building the app and turning configuration and
database errors into one-line messages instead of tracebacks."""
from __future__ import annotations

import functools

import click

from .alerting.rules import RulesError
from .health.config import ChecksConfigError
from .settings import SettingsError

CONFIG_ERRORS = (SettingsError, ChecksConfigError, RulesError)


class ConfigErrorExit(click.ClickException):
    """A configuration problem: the message, and exit status 2."""

    exit_code = 2


def build_app(**kwargs):
    from . import create_app

    try:
        return create_app(**kwargs)
    except CONFIG_ERRORS as exc:
        raise ConfigErrorExit(f"configuration error: {exc}") from None


def with_app(func):
    """Build the app and run the command inside its app context."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from sqlalchemy.exc import OperationalError, ProgrammingError

        app = build_app()
        with app.app_context():
            try:
                return func(app, *args, **kwargs)
            except (OperationalError, ProgrammingError) as exc:
                # Most often a database that was never migrated, or one that is unreachable.
                first_line = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
                raise click.ClickException(
                    f"database error: {first_line} (is it reachable, and migrated with `controlplane db upgrade`?)"
                ) from None

    return wrapper
