"""SQLite (the embedded default): a consistent copy through SQLite's online backup API."""
from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from ..checksums import sqlite_checksums
from . import EngineError

READ_SIZE = 1 << 20


def sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise EngineError(f"not a SQLite file URL: {url}")
    return Path(url[len("sqlite:///"):].split("?", 1)[0])


class SqliteOnline:
    name = "sqlite"
    compression = "zstd"

    def __init__(self, database_url: str):
        self.path = sqlite_path(database_url)

    def dump(self) -> "SqliteDump":
        return SqliteDump(self.path)

    def checksums(self, url: str) -> dict:
        with sqlite3.connect(sqlite_path(url)) as connection:
            return sqlite_checksums(connection)

    def check_target(self, url: str, replace: bool, manifest: dict) -> None:
        target = sqlite_path(url)
        if replace or not target.exists() or target.stat().st_size == 0:
            return
        with sqlite3.connect(target) as connection:
            tables = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if tables:
            raise EngineError(f"{target} already holds {tables} tables: restore into a new file, "
                              "or pass --in-place to replace the live database")

    def restore(self, files: dict[str, Path], url: str, replace: bool) -> None:
        target = sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(files["database.sqlite"])
        destination = sqlite3.connect(target)
        try:
            # The backup API replaces the target's pages in one step under SQLite's own locking,
            # so even --in-place never leaves a half-restored file.
            source.backup(destination)
        finally:
            source.close()
            destination.close()


class SqliteDump:
    def __init__(self, path: Path):
        if not path.exists():
            raise EngineError(f"{path} does not exist")
        handle, name = tempfile.mkstemp(prefix="controlplane-backup-", suffix=".sqlite")
        os.close(handle)
        self._copy = Path(name)
        source = sqlite3.connect(path)
        destination = sqlite3.connect(self._copy)
        try:
            source.backup(destination)
            self.tables = sqlite_checksums(destination)
        finally:
            source.close()
            destination.close()
        self.artefacts = [("database.sqlite", self._read())]

    def _read(self):
        try:
            with open(self._copy, "rb") as handle:
                while block := handle.read(READ_SIZE):
                    yield block
        finally:
            self._copy.unlink(missing_ok=True)

    def finish(self) -> dict:
        self._copy.unlink(missing_ok=True)
        return {"server_version": f"SQLite {sqlite3.sqlite_version}", "server_version_num": 0, "tables": self.tables}
