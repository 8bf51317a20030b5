"""Typed configuration read once from the environment.

Every reader raises `SettingsError` naming the variable when a value is malformed, so a bad
deploy fails at start-up with a message an on-call engineer can act on, not at the first
request that touches the value. Defaults are safe for development; the few that would be unsafe
in production (generated secrets) are refused there.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

from .proxies import CLIENT_ADDRESS_HEADERS, FLY_CLIENT_IP, FLY_PROXY_NETWORKS, X_FORWARDED_FOR, parse_networks

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("development", "staging", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The plan: development DEBUG, staging INFO, production WARNING; errors always.
DEFAULT_LOG_LEVEL = {"development": "DEBUG", "staging": "INFO", "production": "WARNING"}
MIN_SECRET_LENGTH = 32
# DB_ANSWER_TIMEOUT_SECONDS's default is the statement timeout plus this.
ANSWER_MARGIN_SECONDS = 5.0
KNOWN_WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "jwt_secret", "development"}


# What production refuses unless ALLOW_DEVELOPMENT_SETTINGS names it: name -> (is it in use, what it is).
DEVELOPMENT_SETTINGS = {
    "sqlite": (lambda s: s.is_sqlite, "DATABASE_URL is SQLite (one file on one machine)"),
    "sink": (lambda s: s.postal_transport == "sink", "POSTAL_TRANSPORT=sink (mail is written to SINK_DIR, not sent)"),
    "local-backups": (lambda s: s.backup_storage == "local",
                      "BACKUP_STORAGE=local (backups on the machine they protect; set BACKUP_STORAGE=s3)"),
    "private-webhooks": (lambda s: s.webhook_allow_private_targets,
                         "WEBHOOK_ALLOW_PRIVATE_TARGETS=true (webhooks may reach private addresses)"),
}


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Env:
    """Typed readers over one environment mapping (os.environ, or a test's overrides)."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def int(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {number}")
        return number

    def float(self, name: str, default: float, *, minimum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {number}")
        return number

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {value!r}")

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()

    def secret(self, name: str) -> str | None:
        """`NAME`, or the contents of the file named by `NAME_FILE` (Docker/Fly secrets)."""
        file_name = self.raw(f"{name}_FILE")
        if file_name is not None:
            try:
                return Path(file_name).read_text().strip() or None
            except OSError as exc:
                raise SettingsError(f"{name}_FILE: cannot read {file_name}: {exc.strerror}") from None
        return self.raw(name)


def normalise_database_url(url: str) -> str:
    """Fly and Heroku hand out `postgres://`, which SQLAlchemy 2 no longer accepts."""
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://"):]
    if not url.startswith(("postgresql://", "postgresql+psycopg2://", "sqlite://")):
        raise SettingsError(
            f"DATABASE_URL must start with postgresql:// or sqlite://, got {url.split(':', 1)[0]}://"
        )
    return url


@dataclass(frozen=True)
class Settings:
    env: str
    # Development settings production accepts anyway (ALLOW_DEVELOPMENT_SETTINGS; DEVELOPMENT_SETTINGS).
    allowed_development_settings: tuple[str, ...]
    database_url: str
    data_dir: Path
    backup_dir: Path
    checks_file: Path
    migrations_dir: Path
    log_level: str
    instance_id: str

    jwt_secret: str
    jwt_secret_previous: str | None
    api_key_salt: str
    api_key_salt_previous: str | None

    postal_api_url: str | None
    postal_api_key: str | None
    postal_timeout: float
    postal_transport: str
    postal_webhook_public_key: str | None
    postal_jwks_url: str | None
    postal_webhook_allow_unsigned: bool
    webhook_allow_private_targets: bool
    rate_limit_burst_per_minute: int
    login_attempts_per_minute: int
    # Peers (CIDRs) whose client-address header is believed, and that header (controlplane/proxies.py).
    trusted_proxies: tuple[str, ...]
    client_address_header: str
    events_poll_seconds: float
    events_stream_seconds: float
    # Open /api/v1/events streams one web worker process admits, in all and per key (docs/reliability.md).
    events_streams_max: int
    events_streams_per_key: int
    jwt_ttl_seconds: int
    rate_limit_per_hour: int
    rate_limit_per_day: int
    monthly_quota: int
    webhook_timeout_seconds: float
    webhook_max_attempts: int
    webhook_backoff_seconds: float
    webhook_disable_after_failures: int
    sink_dir: Path
    max_attachment_bytes: int
    delivery_interval_seconds: float
    delivery_batch_size: int
    delivery_concurrency: int
    delivery_claim_seconds: float
    delivery_max_attempts: int
    delivery_backoff_seconds: float
    delivery_backoff_max_seconds: float
    smtp_host: str | None
    redis_url: str | None
    sentry_dsn: str | None
    otel_endpoint: str | None
    otel_service_name: str

    max_request_bytes: int
    db_pool_size: int
    db_max_overflow: int
    db_pool_timeout: float
    db_pool_recycle: int
    db_connect_timeout: int
    db_statement_timeout_ms: int
    # Web and worker give up on a pool or leader connection silent this long (0: never); see database.py.
    db_answer_timeout: float

    health_cache_seconds: float
    check_results_retention_days: int
    request_stats_flush_seconds: float
    request_stats_retention_days: int
    job_runs_retention_days: int
    worker_stale_seconds: float
    leader_poll_seconds: float
    drain_seconds: float
    # `controlplane worker` serves its own /metrics here (0: not at all); see telemetry/worker_metrics.py.
    worker_metrics_port: int = 9091

    backup_engine: str = "auto"
    backup_storage: str = "local"
    backup_encryption_key: bytes = b"\0" * 32
    backup_encryption_keys_previous: tuple[bytes, ...] = ()
    backup_s3_bucket: str | None = None
    backup_s3_prefix: str = ""
    backup_s3_endpoint: str | None = None
    backup_s3_region: str | None = None
    backup_work_dir: str | None = None
    backup_full_at: tuple[int, int] = (3, 0)
    backup_hourly: bool = True
    backup_retention_days: int = 30
    backup_drill_url: str | None = None
    backup_drill_weekday: str = "sun"
    backup_wal_seal_seconds: float = 60.0
    backup_pg_bindir: str | None = None
    alert_rules_file: Path = PROJECT_ROOT / "alerts" / "rules.yaml"
    alert_evaluation_seconds: float = 15.0
    # Route name -> routing key: "default" from PAGERDUTY_ROUTING_KEY, others from
    # PAGERDUTY_ROUTING_KEY_<NAME> (a severity, or a rule's `pagerduty_route` label).
    pagerduty_routes: dict = field(default_factory=dict)
    pagerduty_events_url: str = "https://events.pagerduty.com"
    alert_resolve_repeats: int = 2
    alert_repeat_seconds: float = 4 * 3600
    # Web instances page AlertingStalled when no evaluation completed for this long (default:
    # 120 s, or four evaluation intervals when those are longer).
    alert_watchdog_seconds: float = 120.0
    # Pinged after each completed evaluation (healthchecks.io, Dead Man's Snitch); unset: no ping.
    alert_heartbeat_url: str | None = None
    # Where docs/runbooks.md is published; unset: rules link to docs/runbooks.md in the repository.
    alert_runbook_base_url: str | None = None
    grafana_url: str | None = None
    alert_webhook_url: str | None = None
    alert_webhook_secret: str | None = None
    alert_email_to: tuple = ()
    alert_email_from: str = "alerts@mailgoat.local"
    status_page_id: str = "mailgoat"
    status_page_name: str = "MailGoat"
    status_page_url: str | None = None
    status_page_logo_url: str | None = None
    status_page_links: tuple = ()  # (label, url) pairs shown in the page header
    status_page_refresh_seconds: int = 60
    status_cache_seconds: float = 2.0
    status_email_from: str = "status@mailgoat.local"
    # Where `status-publish` pushes the static copy: a prefix in the backup storage backend.
    status_export_prefix: str | None = None

    # Which secrets were generated because none was configured (development only).
    generated_secrets: tuple[str, ...] = field(default=())

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def describe(self) -> dict:
        """Settings safe to print: secrets are shown only as set / unset."""
        hidden = {"jwt_secret", "jwt_secret_previous", "api_key_salt", "api_key_salt_previous",
                  "backup_encryption_key", "backup_encryption_keys_previous", "pagerduty_routes", "alert_webhook_secret",
                  "postal_api_key", "sentry_dsn", "alert_heartbeat_url"}
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in hidden:
                value = "set" if value else "unset"
            elif f.name == "database_url":
                value = redact_url(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = Env(os.environ if environ is None else environ)
        app_env = _read_app_env(env)
        data_dir = Path(env.str("DATA_DIR", str(PROJECT_ROOT / "var"))).expanduser().resolve()
        database_url = normalise_database_url(
            env.str("DATABASE_URL", f"sqlite:///{data_dir / 'controlplane.db'}")
        )
        generated: list[str] = []
        jwt_secret = _required_secret(env, "JWT_SECRET", app_env, data_dir, generated)
        api_key_salt = _required_secret(env, "API_KEY_SALT", app_env, data_dir, generated)
        default_level = DEFAULT_LOG_LEVEL[app_env]
        log_level = env.str("LOG_LEVEL", default_level).upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
        backup_key, backup_previous = _backup_keys(env, app_env, data_dir, generated)
        settings = cls(
            env=app_env,
            allowed_development_settings=_allowed_development_settings(env),
            backup_engine=env.choice("BACKUP_ENGINE", ("auto", "sqlite", "pg_logical", "pg_physical"), "auto"),
            backup_storage=env.choice("BACKUP_STORAGE", ("local", "s3"), "local"),
            backup_encryption_key=backup_key,
            backup_encryption_keys_previous=backup_previous,
            backup_s3_bucket=env.str("BACKUP_S3_BUCKET"),
            backup_s3_prefix=env.str("BACKUP_S3_PREFIX", "") or "",
            backup_s3_endpoint=_optional_url(env, "BACKUP_S3_ENDPOINT"),
            backup_s3_region=env.str("BACKUP_S3_REGION") or env.str("AWS_REGION"),
            backup_work_dir=env.str("BACKUP_WORK_DIR"),
            backup_full_at=_time_of_day(env, "BACKUP_FULL_AT", "03:00"),
            backup_hourly=env.bool("BACKUP_HOURLY", True),
            backup_retention_days=env.int("BACKUP_RETENTION_DAYS", 30, minimum=1),
            backup_drill_url=_optional_url(env, "BACKUP_DRILL_URL"),
            backup_pg_bindir=env.str("BACKUP_PG_BINDIR"),
            alert_rules_file=Path(env.str("ALERT_RULES_FILE", str(PROJECT_ROOT / "alerts" / "rules.yaml"))),
            pagerduty_routes=_pagerduty_routes(env),
            pagerduty_events_url=(env.str("PAGERDUTY_EVENTS_URL") or "https://events.pagerduty.com").rstrip("/"),
            alert_resolve_repeats=env.int("ALERT_RESOLVE_REPEATS", 2, minimum=0),
            alert_repeat_seconds=env.float("ALERT_REPEAT_SECONDS", 4 * 3600, minimum=0),
            grafana_url=_optional_url(env, "GRAFANA_URL"),
            alert_webhook_url=_optional_url(env, "ALERT_WEBHOOK_URL"),
            alert_webhook_secret=env.secret("ALERT_WEBHOOK_SECRET"),
            alert_email_to=tuple(a.strip() for a in (env.str("ALERT_EMAIL_TO") or "").split(",") if a.strip()),
            alert_email_from=env.str("ALERT_EMAIL_FROM") or "alerts@mailgoat.local",
            status_page_id=env.str("STATUS_PAGE_ID") or "mailgoat",
            status_page_name=env.str("STATUS_PAGE_NAME") or "MailGoat",
            status_page_url=_optional_url(env, "STATUS_PAGE_URL"),
            status_page_logo_url=_optional_url(env, "STATUS_PAGE_LOGO_URL"),
            status_page_links=_page_links(env),
            status_page_refresh_seconds=env.int("STATUS_PAGE_REFRESH_SECONDS", 60, minimum=0),
            status_cache_seconds=env.float("STATUS_CACHE_SECONDS", 2.0, minimum=0),
            status_email_from=env.str("STATUS_EMAIL_FROM") or "status@mailgoat.local",
            status_export_prefix=(env.str("STATUS_EXPORT_PREFIX") or "").strip("/") or None,
            alert_evaluation_seconds=env.float("ALERT_EVALUATION_SECONDS", 15.0, minimum=1.0),
            alert_watchdog_seconds=_watchdog_seconds(env),
            alert_heartbeat_url=_optional_url(env, "ALERT_HEARTBEAT_URL"),
            alert_runbook_base_url=_optional_url(env, "ALERT_RUNBOOK_BASE_URL"),
            backup_wal_seal_seconds=env.float("BACKUP_WAL_SEAL_SECONDS", 60.0, minimum=1.0),
            backup_drill_weekday=env.choice("BACKUP_DRILL_WEEKDAY", ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "sun"),
            database_url=database_url,
            data_dir=data_dir,
            backup_dir=Path(env.str("BACKUP_DIR", str(data_dir / "backups"))).expanduser().resolve(),
            checks_file=Path(env.str("CHECKS_FILE", str(PROJECT_ROOT / "checks" / "checks.yaml"))),
            migrations_dir=Path(env.str("MIGRATIONS_DIR", str(PROJECT_ROOT / "migrations"))),
            log_level=log_level,
            instance_id=env.str("INSTANCE_ID") or env.str("FLY_MACHINE_ID") or _default_instance_id(),
            jwt_secret=jwt_secret,
            jwt_secret_previous=env.secret("JWT_SECRET_PREVIOUS"),
            api_key_salt=api_key_salt,
            api_key_salt_previous=env.secret("API_KEY_SALT_PREVIOUS"),
            postal_api_url=_optional_url(env, "POSTAL_API_URL"),
            postal_api_key=env.secret("POSTAL_API_KEY"),
            postal_timeout=env.float("POSTAL_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            # Without a Postal URL, development delivers into a local sink; production waits.
            postal_transport=env.choice(
                "POSTAL_TRANSPORT", ("http", "sink"),
                "sink" if app_env == "development" and not env.str("POSTAL_API_URL") else "http",
            ),
            postal_webhook_public_key=env.secret("POSTAL_WEBHOOK_PUBLIC_KEY"),
            postal_jwks_url=_optional_url(env, "POSTAL_JWKS_URL"),
            postal_webhook_allow_unsigned=_development_only(env, "POSTAL_WEBHOOK_ALLOW_UNSIGNED", app_env),
            events_poll_seconds=env.float("EVENTS_POLL_SECONDS", 1.0, minimum=0.01),
            events_stream_seconds=env.float("EVENTS_STREAM_SECONDS", 300.0, minimum=1),
            events_streams_max=env.int("EVENTS_STREAMS_MAX", 200, minimum=1),
            events_streams_per_key=env.int("EVENTS_STREAMS_PER_KEY", 10, minimum=1),
            login_attempts_per_minute=env.int("LOGIN_ATTEMPTS_PER_MINUTE", 10, minimum=1),
            trusted_proxies=_trusted_proxies(env),
            client_address_header=env.choice("CLIENT_ADDRESS_HEADER", CLIENT_ADDRESS_HEADERS,
                                             FLY_CLIENT_IP if env.raw("FLY_APP_NAME") else X_FORWARDED_FOR),
            jwt_ttl_seconds=env.int("JWT_TTL_SECONDS", 12 * 3600, minimum=60),
            rate_limit_burst_per_minute=env.int("RATE_LIMIT_BURST_PER_MINUTE", 120, minimum=1),
            rate_limit_per_hour=env.int("RATE_LIMIT_PER_HOUR", 2000, minimum=1),
            rate_limit_per_day=env.int("RATE_LIMIT_PER_DAY", 20000, minimum=1),
            monthly_quota=env.int("MONTHLY_QUOTA", 0, minimum=0),
            webhook_allow_private_targets=env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False),
            webhook_timeout_seconds=env.float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            webhook_max_attempts=env.int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1),
            webhook_backoff_seconds=env.float("WEBHOOK_BACKOFF_SECONDS", 30.0, minimum=0),
            webhook_disable_after_failures=env.int("WEBHOOK_DISABLE_AFTER_FAILURES", 20, minimum=1),
            sink_dir=Path(env.str("SINK_DIR", str(data_dir / "sink"))).expanduser().resolve(),
            max_attachment_bytes=env.int("MAX_ATTACHMENT_BYTES", 25 * 1024 * 1024, minimum=1),
            delivery_interval_seconds=env.float("DELIVERY_INTERVAL_SECONDS", 1.0, minimum=0.05),
            delivery_batch_size=env.int("DELIVERY_BATCH_SIZE", 50, minimum=1),
            delivery_concurrency=env.int("DELIVERY_CONCURRENCY", 16, minimum=1),
            delivery_claim_seconds=env.float("DELIVERY_CLAIM_SECONDS", 120.0, minimum=1),
            delivery_max_attempts=env.int("DELIVERY_MAX_ATTEMPTS", 8, minimum=1),
            delivery_backoff_seconds=env.float("DELIVERY_BACKOFF_SECONDS", 30.0, minimum=0),
            delivery_backoff_max_seconds=env.float("DELIVERY_BACKOFF_MAX_SECONDS", 3600.0, minimum=0),
            smtp_host=env.str("SMTP_HOST"),
            redis_url=env.str("REDIS_URL"),
            sentry_dsn=env.secret("SENTRY_DSN"),
            otel_endpoint=env.str("OTEL_EXPORTER_OTLP_ENDPOINT"),
            otel_service_name=env.str("OTEL_SERVICE_NAME", "mailgoat-controlplane"),
            max_request_bytes=env.int("MAX_REQUEST_BYTES", 40 * 1024 * 1024, minimum=1024),
            db_pool_size=env.int("DB_POOL_SIZE", 5, minimum=1),
            db_max_overflow=env.int("DB_MAX_OVERFLOW", 10, minimum=0),
            db_pool_timeout=env.float("DB_POOL_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            db_pool_recycle=env.int("DB_POOL_RECYCLE_SECONDS", 1800, minimum=-1),
            db_connect_timeout=env.int("DB_CONNECT_TIMEOUT_SECONDS", 5, minimum=1),
            db_statement_timeout_ms=env.int("DB_STATEMENT_TIMEOUT_MS", 30000, minimum=0),
            db_answer_timeout=_answer_timeout(env),
            health_cache_seconds=env.float("HEALTH_CACHE_SECONDS", 2.0, minimum=0),
            check_results_retention_days=env.int("CHECK_RESULTS_RETENTION_DAYS", 14, minimum=1),
            request_stats_flush_seconds=env.float("REQUEST_STATS_FLUSH_SECONDS", 5.0, minimum=0.1),
            request_stats_retention_days=env.int("REQUEST_STATS_RETENTION_DAYS", 7, minimum=1),
            job_runs_retention_days=env.int("JOB_RUNS_RETENTION_DAYS", 14, minimum=1),
            worker_stale_seconds=env.float("WORKER_STALE_SECONDS", 60.0, minimum=1),
            leader_poll_seconds=env.float("LEADER_POLL_SECONDS", 5.0, minimum=0.1),
            drain_seconds=env.float("DRAIN_SECONDS", 5.0, minimum=0),
            worker_metrics_port=_port(env, "WORKER_METRICS_PORT", 9091),
            generated_secrets=tuple(generated),
        )
        if settings.is_production:
            _refuse_development_settings(settings)
        return settings


def _read_app_env(env: Env) -> str:
    name = "APP_ENV" if env.raw("APP_ENV") is not None else "NODE_ENV"
    return env.choice(name, ENVIRONMENTS, "development")


def _required_secret(env: Env, name: str, app_env: str, data_dir: Path, generated: list[str]) -> str:
    value = env.secret(name)
    if value is not None:
        weak = len(value) < MIN_SECRET_LENGTH or value.lower() in KNOWN_WEAK_SECRETS
        if weak and app_env != "development":
            raise SettingsError(
                f"{name} is too weak for {app_env}: use at least {MIN_SECRET_LENGTH} random "
                f"characters (for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return value
    if app_env != "development":
        raise SettingsError(f"{name} must be set in {app_env} (or {name}_FILE naming a file holding it)")
    generated.append(name)
    return _development_secret(name, data_dir)


def _development_secret(name: str, data_dir: Path) -> str:
    """A generated secret kept in the data directory, so API keys and sessions survive restarts."""
    path = data_dir / ".dev-secrets.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    if name not in stored:
        stored[name] = secrets.token_urlsafe(48)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored))
            path.chmod(0o600)
        except OSError as exc:
            log.warning("could not persist generated %s in %s: %s", name, path, exc)
    return stored[name]


def _backup_keys(env: Env, app_env: str, data_dir: Path, generated: list[str]) -> tuple[bytes, tuple[bytes, ...]]:
    """BACKUP_ENCRYPTION_KEY (32 bytes, base64 or hex) and the previous keys that still open old backups."""
    from .backups.sealing import parse_key

    try:
        text = env.secret("BACKUP_ENCRYPTION_KEY")
        if text is None:
            if app_env != "development":
                raise SettingsError(f"BACKUP_ENCRYPTION_KEY must be set in {app_env} (or BACKUP_ENCRYPTION_KEY_FILE)")
            generated.append("BACKUP_ENCRYPTION_KEY")
            # Derived from a generated secret kept beside the data, so dev backups stay readable.
            current = hashlib.sha256(_development_secret("BACKUP_ENCRYPTION_KEY", data_dir).encode()).digest()
        else:
            current = parse_key(text, "BACKUP_ENCRYPTION_KEY")
        previous = tuple(parse_key(part, "BACKUP_ENCRYPTION_KEYS_PREVIOUS")
                         for part in (env.secret("BACKUP_ENCRYPTION_KEYS_PREVIOUS") or "").split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return current, previous


def _page_links(env: Env) -> tuple:
    """STATUS_PAGE_LINKS="Docs=https://docs.example, Support=https://help.example\"."""
    links = []
    for item in (env.str("STATUS_PAGE_LINKS") or "").split(","):
        if not item.strip():
            continue
        label, _, url = item.partition("=")
        if not label.strip() or not url.strip().startswith(("http://", "https://")):
            raise SettingsError(f"STATUS_PAGE_LINKS: each link is Label=https://..., got {item.strip()!r}")
        links.append((label.strip(), url.strip()))
    return tuple(links)


def _pagerduty_routes(env: Env) -> dict:
    routes = {}
    names = {name.removesuffix("_FILE") for name in env.environ if name.startswith("PAGERDUTY_ROUTING_KEY")}
    for name in sorted(names):
        value = env.secret(name)  # NAME or NAME_FILE
        if value:
            route = "default" if name == "PAGERDUTY_ROUTING_KEY" else name[len("PAGERDUTY_ROUTING_KEY_"):].lower()
            routes[route] = value
    return routes


def _watchdog_seconds(env: Env) -> float:
    """ALERT_WATCHDOG_SECONDS: at least two evaluation intervals, or every slow pass would page."""
    interval = env.float("ALERT_EVALUATION_SECONDS", 15.0, minimum=1.0)
    seconds = env.float("ALERT_WATCHDOG_SECONDS", max(120.0, 4 * interval), minimum=1.0)
    if seconds < 2 * interval:
        raise SettingsError(f"ALERT_WATCHDOG_SECONDS must be at least twice ALERT_EVALUATION_SECONDS "
                            f"({2 * interval:g}), got {seconds:g}")
    return seconds


def _answer_timeout(env: Env) -> float:
    """DB_ANSWER_TIMEOUT_SECONDS: longer than the statement timeout, or it would end statements the
    server is still allowed to run. The margin covers the time the server's own error takes to come."""
    statement_seconds = env.int("DB_STATEMENT_TIMEOUT_MS", 30000, minimum=0) / 1000
    default = statement_seconds + ANSWER_MARGIN_SECONDS if statement_seconds else 0.0
    seconds = env.float("DB_ANSWER_TIMEOUT_SECONDS", default, minimum=0)
    if seconds and statement_seconds and seconds <= statement_seconds:
        raise SettingsError(f"DB_ANSWER_TIMEOUT_SECONDS must be longer than DB_STATEMENT_TIMEOUT_MS "
                            f"({statement_seconds:g} s), or 0 for no deadline, got {seconds:g}")
    return seconds


def _port(env: Env, name: str, default: int) -> int:
    port = env.int(name, default, minimum=0)
    if port > 65535:
        raise SettingsError(f"{name} must be a TCP port (1-65535, or 0 for off), got {port}")
    return port


def _time_of_day(env: Env, name: str, default: str) -> tuple[int, int]:
    text = env.str(name, default) or default
    try:
        hour, minute = (int(part) for part in text.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise SettingsError(f"{name} must be a UTC time of day as HH:MM, got {text!r}") from None
    return hour, minute


def _trusted_proxies(env: Env) -> tuple[str, ...]:
    """TRUSTED_PROXIES, else Fly's proxy network on Fly (FLY_APP_NAME is set on every Fly machine,
    fly.io/docs/machines/runtime-environment/), else nobody: elsewhere no proxy can be assumed."""
    text = env.str("TRUSTED_PROXIES") or (",".join(FLY_PROXY_NETWORKS) if env.raw("FLY_APP_NAME") else "")
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise SettingsError(f"TRUSTED_PROXIES: {exc}") from None


def _allowed_development_settings(env: Env) -> tuple[str, ...]:
    names = tuple(part.strip().lower() for part in (env.str("ALLOW_DEVELOPMENT_SETTINGS") or "").split(",")
                  if part.strip())
    unknown = [name for name in names if name not in DEVELOPMENT_SETTINGS]
    if unknown:
        raise SettingsError(f"ALLOW_DEVELOPMENT_SETTINGS: unknown {', '.join(unknown)} "
                            f"(one of {', '.join(DEVELOPMENT_SETTINGS)})")
    return names


def _refuse_development_settings(settings: Settings) -> None:
    """Production starts only with production settings, unless the operator says otherwise."""
    refused = [name for name, (in_use, _) in DEVELOPMENT_SETTINGS.items()
               if in_use(settings) and name not in settings.allowed_development_settings]
    if refused:
        what = "; ".join(DEVELOPMENT_SETTINGS[name][1] for name in refused)
        raise SettingsError(f"production refuses development settings: {what}. Change them, or accept them "
                            f"with ALLOW_DEVELOPMENT_SETTINGS={','.join(refused)}")


def _development_only(env: Env, name: str, app_env: str) -> bool:
    value = env.bool(name, False)
    if value and app_env != "development":
        raise SettingsError(f"{name} may only be set in development")
    return value


def _optional_url(env: Env, name: str) -> str | None:
    value = env.str(name)
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def redact_url(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _default_instance_id() -> str:
    return socket.gethostname()
