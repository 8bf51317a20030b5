"""A local directory (the default). Objects are written to a temporary name, fsynced, then renamed."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from . import StorageError

READ_SIZE = 1 << 20


class LocalStorage:
    name = "local"

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def from_settings(cls, settings) -> "LocalStorage":
        return cls(settings.backup_dir)

    def describe(self) -> str:
        return f"local {self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"key {key!r} leaves the backup directory", permanent=True)
        return path

    def put(self, key: str, blocks: Iterable[bytes], content_type: str | None = None) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        written = 0
        try:
            with open(partial, "wb") as out:
                for block in blocks:
                    out.write(block)
                    written += len(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return written

    def open(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise StorageError(f"{path} does not exist", permanent=True) from None
        return _read(handle)

    def keys(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        found = (path.relative_to(self.root).as_posix() for path in self.root.rglob("*") if path.is_file())
        return sorted(key for key in found if key.startswith(prefix) and not key.endswith(".partial"))

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()  # the backup's folder, once empty
        except OSError:
            pass


def _read(handle) -> Iterator[bytes]:
    with handle:
        while block := handle.read(READ_SIZE):
            yield block
