"""Column types that behave the same on SQLite and PostgreSQL."""
from sqlalchemy import BigInteger, DateTime, Integer

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
UTCDateTime = DateTime(timezone=True)
