"""Per-table row counts and content checksums: recorded at backup time, compared after a restore.

The checksum is order-independent (a sum of per-row hashes), so a restore that loads rows in
another physical order still matches, while any changed, missing or extra row does not.
"""
from __future__ import annotations

import sqlite3
import zlib


def postgres_checksums(cursor) -> dict[str, dict]:
    """For every ordinary table, in the transaction (and snapshot) of `cursor` (psycopg2)."""
    cursor.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY 1, 2")
    tables = cursor.fetchall()
    result = {}
    for schema, table in tables:
        quoted = f'"{schema.replace(chr(34), chr(34) * 2)}"."{table.replace(chr(34), chr(34) * 2)}"'
        cursor.execute(f"SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0)::text FROM ONLY {quoted} AS t")
        rows, checksum = cursor.fetchone()
        result[f"{schema}.{table}"] = {"rows": rows, "checksum": checksum}
    return result


def sqlite_checksums(connection: sqlite3.Connection) -> dict[str, dict]:
    names = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    result = {}
    for name in names:
        rows, total = 0, 0
        for row in connection.execute(f'SELECT * FROM "{name.replace(chr(34), chr(34) * 2)}"'):
            rows += 1
            total = (total + zlib.crc32(repr(row).encode())) % (1 << 63)
        result[name] = {"rows": rows, "checksum": str(total)}
    return result


def differences(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want is None:
            problems.append(f"{table}: present after restore, absent at backup time")
        elif got is None:
            problems.append(f"{table}: missing after restore")
        elif want["rows"] != got["rows"]:
            problems.append(f"{table}: {got['rows']} rows, {want['rows']} at backup time")
        elif want["checksum"] != got["checksum"]:
            problems.append(f"{table}: same row count, different content")
    return problems
