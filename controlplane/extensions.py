"""Extensions created unbound; `create_app` binds them with init_app()."""
from flask import request
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Deterministic constraint names so Alembic can drop them later on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()

# Flask-Limiter with its own single-bucket headers off: the gateway writes MailGoat's per-bucket
# headers (gateway/limits.py). If Redis becomes unreachable, counting falls back to memory.
limiter = Limiter(
    key_func=lambda: request.remote_addr or "unknown",
    strategy="fixed-window",
    headers_enabled=False,
    in_memory_fallback_enabled=True,
    key_prefix="mailgoat",
)
