"""Where sealed backups live. Contract (`Storage`):

    put(key, blocks, content_type=None) -> bytes written
                                          stream blocks into `key`; the object appears only whole
                                          (content_type: for objects served as they are, the status copy)
    open(key) -> iterator of blocks       raises StorageError(permanent=True) when `key` is missing
    delete(key)                           no error when already gone
    keys(prefix="") -> list of keys       every whole object under `prefix`, sorted (for a catalog
                                          rebuilt from storage alone)
    describe() -> str                     where, for humans ("local /var/backups", "s3://bucket/prefix")

Registry: STORAGES, keyed by BACKUP_STORAGE.
"""
from __future__ import annotations


class StorageError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def storage_for(settings):
    from .local import LocalStorage
    from .s3 import S3Storage

    storages = {"local": LocalStorage, "s3": S3Storage}
    return storages[settings.backup_storage].from_settings(settings)


STORAGES = ("local", "s3")
