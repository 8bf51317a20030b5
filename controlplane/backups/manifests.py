"""Sealed manifests: storage that describes itself.

Every backup (full, manual, pre-migration, WAL segment, WAL bundle) seals its manifest into
`manifests/<name>.sealed` with the key that seals its artefacts. The manifest holds the backup's
identity, every artefact's storage key and both SHA-256 sums, the per-table row counts and
checksums, sizes and LSNs; nothing of it is stored in plaintext. The manifest is sealed bound to
the backup's name and each artefact to the backup's name and its own (sealing.binding), so a
manifest or an artefact copied from another backup, a manifest altered in any byte, or one sealed
by another key fails authentication when it is read, before a restore writes anything.

So with only the storage settings and the key, storage can be listed, restored from and
re-imported into an empty catalog (catalog.py).

Plaintext `<name>/manifest.json` files were written only by unreleased builds (no release wrote
them): they are not read, and a rebuild reports them by name so an operator can delete them.
The artefacts of those builds were sealed without the binding, so they no longer open either;
take a new backup after upgrading from one.
"""
from __future__ import annotations

import json
import re

from .models import MANIFEST_FORMAT, Backup
from .sealing import BackupIntegrityError, Keyring, binding, seal, unseal

PREFIX = "manifests/"
SUFFIX = ".sealed"
# `<name>/manifest.json` of a backup taken by take_backup in an unreleased build; other
# manifest.json files share the storage (the status page's static copy keeps one).
LEGACY_MANIFEST = re.compile(r"^(\d{8}T\d{6}Z-[a-z-]+-[0-9a-f]{6})/manifest\.json$")
MAX_MANIFEST_BYTES = 64 << 20  # a manifest is kilobytes; anything this large is not one


def manifest_key(name: str) -> str:
    return f"{PREFIX}{name}{SUFFIX}"


def write_manifest(storage, keys: Keyring, row: Backup, parent_name: str | None = None) -> None:
    """Seal `row`'s manifest into storage; called once its artefacts are stored."""
    document = json.dumps(row.manifest(parent_name), sort_keys=True).encode()
    sealed, _ = seal([document], keys, "zstd", bound_to=binding(row.name, "manifest"))
    storage.put(manifest_key(row.name), sealed)


def read_manifest(storage, keys: Keyring, name: str) -> dict:
    """The authenticated manifest of backup `name`.

    Raises StorageError when storage has none, BackupIntegrityError when it cannot be trusted.
    """
    plain = bytearray()
    for block in unseal(storage.open(manifest_key(name)), keys, bound_to=binding(name, "manifest")):
        plain += block
        if len(plain) > MAX_MANIFEST_BYTES:
            raise BackupIntegrityError(f"the manifest of {name} is larger than any manifest")
    manifest = json.loads(plain)
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("name") != name:
        raise BackupIntegrityError(f"the manifest of {name} is not a format-{MANIFEST_FORMAT} manifest of {name}")
    return manifest


def stored_names(storage) -> tuple[list[str], list[str]]:
    """Names of the backups storage holds a sealed manifest for, and of those with only a
    plaintext manifest.json from an unreleased build."""
    keys = storage.keys()
    sealed = [key[len(PREFIX):-len(SUFFIX)] for key in keys if key.startswith(PREFIX) and key.endswith(SUFFIX)]
    legacy = [match.group(1) for match in map(LEGACY_MANIFEST.match, keys) if match]
    return sealed, sorted(set(legacy) - set(sealed))
