"""UTC helpers. Everything stored is UTC; SQLite hands datetimes back naive, so we re-attach it."""
from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def isoformat(value: datetime | None) -> str | None:
    value = as_utc(value)
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An ISO-8601 time ("Z" allowed); without an offset it is taken as UTC. ValueError if not one."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    return as_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00")))
