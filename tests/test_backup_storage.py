"""Storage that describes itself: sealed manifests, and list / restore / catalog rebuild with only
the storage settings and the key, on an empty or brand-new database.

Each round trip runs on both engines (SQLite, pg_dump on a throwaway PostgreSQL database) and
both storages (a local directory, a real local S3-compatible server).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from controlplane.cli import main
from controlplane.extensions import db
from controlplane.gateway.models import Message
from tests.conftest import S3_BUCKET, new_key

BODY = {"to": ["ada@example.com"], "from": "agent@mailgoat.dev", "subject": "kept", "plain_body": "row"}
KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request):
    return request.param


@pytest.fixture(params=["local", "s3"])
def storage_env(request, tmp_path) -> dict[str, str]:
    env = {"BACKUP_ENCRYPTION_KEY": KEY, "BACKUP_DIR": str(tmp_path / "storage")}
    if request.param == "s3":
        env.update(request.getfixturevalue("s3_env"), BACKUP_S3_PREFIX="prod")
    return env


@pytest.fixture
def new_database(engine, tmp_path, request):
    """New databases of the engine under test: empty (holding no table), or not created yet."""
    counter = iter(range(100))

    def make(exists: bool = True) -> str:
        if engine == "sqlite":
            path = tmp_path / f"db{next(counter)}.sqlite"
            if exists:
                path.touch()
            return f"sqlite:///{path}"
        databases = request.getfixturevalue("postgres_databases")
        if exists:
            return databases.create()
        name = f"cp_test_{uuid.uuid4().hex[:12]}"
        databases.created.append(name)
        return make_url(str(databases.admin.url)).set(database=name).render_as_string(hide_password=False)

    return make


@pytest.fixture
def cli(base_env):
    def run(database_url: str, *args, env=None, input=None):
        return CliRunner().invoke(main, list(args), env={**base_env, **(env or {}), "DATABASE_URL": database_url},
                                  input=input)

    return run


def message_subjects(make_app, url: str) -> list[str]:
    app = make_app(DATABASE_URL=url, migrate=False)
    with app.app_context():
        return sorted(db.session.execute(select(Message.subject)).scalars())


@pytest.fixture
def stored(make_app, new_database, storage_env, cli):
    """A live database with three messages and two backups in storage; then the live database is
    forgotten: what is left is storage and the key."""
    live = new_database()
    app = make_app(DATABASE_URL=live, **storage_env)
    client, key = app.test_client(), new_key(app)
    for i in range(3):
        assert client.post("/api/v1/send/message", json={**BODY, "subject": f"kept {i}"},
                           headers={"X-Server-API-Key": key}).status_code == 200
    names = []
    for _ in range(2):
        result = cli(live, "backup", "run", env=storage_env)
        assert result.exit_code == 0, result.output
        names.append(json.loads(cli(live, "backup", "list", "--json", env=storage_env).stdout)[0]["name"])
    return names


def storage_objects(storage_env, tmp_path) -> dict[str, bytes]:
    """Every object storage holds, by key."""
    if storage_env.get("BACKUP_STORAGE") != "s3":
        root = Path(storage_env["BACKUP_DIR"])
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    from controlplane.backups.storage.s3 import S3Storage

    storage = S3Storage(S3_BUCKET, "prod", endpoint_url=storage_env["BACKUP_S3_ENDPOINT"])
    return {key: b"".join(storage.open(key)) for key in storage.keys()}


def test_nothing_about_the_data_is_stored_in_plaintext(stored, storage_env, tmp_path):
    objects = storage_objects(storage_env, tmp_path)
    assert sorted(k for k in objects if k.startswith("manifests/")) == sorted(f"manifests/{n}.sealed" for n in stored)
    assert not any(k.endswith("manifest.json") for k in objects)
    for key, blob in objects.items():
        assert blob.startswith(b"MGBAK1"), key
        # Words of at least five bytes: a shorter one turns up in 100 KiB of ciphertext by chance
        # (b"lsn" did, once in a few dozen runs).
        for word in (b"messages", b"message_recipients", b"checksum", b"plain_sha256", b'"lsn"', b"kept 0"):
            assert word not in blob, (key, word)


def test_list_restore_and_rebuild_on_a_freshly_migrated_database(stored, make_app, new_database, storage_env, cli):
    fresh = new_database()
    make_app(DATABASE_URL=fresh, **storage_env)  # migrated, empty catalog
    listing = cli(fresh, "backup", "list", env=storage_env)
    assert listing.exit_code == 0, listing.output
    assert "no backups yet" not in listing.output
    for name in stored:
        line = next(line for line in listing.stdout.splitlines() if name in line)
        assert "storage only (not in the catalog)" in line and "succeeded" in line and "full" in line
    rows = json.loads(cli(fresh, "backup", "list", "--json", env=storage_env).stdout)
    assert [(r["name"], r["in_catalog"], r["id"]) for r in rows] == [(n, False, None) for n in reversed(stored)]
    assert rows[0]["tables"] and rows[0]["artefacts"]

    target = new_database(exists=False)
    restored = cli(fresh, "backup", "restore", stored[-1], "--target-url", target, "--yes", env=storage_env)
    assert restored.exit_code == 0, restored.output
    assert "tables match the row counts and checksums recorded at backup time" in restored.output
    assert message_subjects(make_app, target) == ["kept 0", "kept 1", "kept 2"]
    verified = cli(fresh, "backup", "verify", stored[0], env=storage_env)
    assert verified.exit_code == 0 and "(from storage's manifest) verified" in verified.output

    rebuilt = cli(fresh, "backup", "catalog", "rebuild", env=storage_env)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "imported 2 backup(s), brought 0 up to date, 0 already catalogued" in rebuilt.stdout
    again = cli(fresh, "backup", "catalog", "rebuild", env=storage_env)
    assert "imported 0 backup(s), brought 0 up to date, 2 already catalogued" in again.stdout
    rows = json.loads(cli(fresh, "backup", "list", "--json", env=storage_env).stdout)
    assert sorted((r["name"], r["in_catalog"], r["status"], r["full_copy"]) for r in rows) == \
           sorted((n, True, "succeeded", True) for n in stored)
    assert "catalog, storage" in cli(fresh, "backup", "list", env=storage_env).stdout


def test_restore_in_place_into_a_brand_new_database_brings_the_catalog_back(stored, make_app, new_database,
                                                                            storage_env, cli):
    fresh = new_database()  # not even migrated: no catalog table
    listing = cli(fresh, "backup", "list", env=storage_env)
    assert listing.exit_code == 0, listing.output
    assert "no backup catalog: listing storage alone" in listing.output and stored[0] in listing.stdout
    refused = cli(fresh, "backup", "catalog", "rebuild", env=storage_env)
    assert refused.exit_code == 1 and "no backup catalog yet: run `controlplane db upgrade`" in refused.output

    restored = cli(fresh, "backup", "restore", stored[0], "--in-place", "--yes", env=storage_env)
    assert restored.exit_code == 0, restored.output
    assert message_subjects(make_app, fresh) == ["kept 0", "kept 1", "kept 2"]
    # The catalog now describes storage: both backups, succeeded (the dump had its own row "running").
    rows = json.loads(cli(fresh, "backup", "list", "--json", env=storage_env).stdout)
    assert sorted((r["name"], r["in_catalog"], r["status"]) for r in rows) == \
           sorted((n, True, "succeeded") for n in stored)


@pytest.fixture
def local_env(tmp_path) -> dict[str, str]:
    return {"BACKUP_ENCRYPTION_KEY": KEY, "BACKUP_DIR": str(tmp_path / "storage")}


@pytest.fixture
def two_backups(make_app, tmp_path, local_env, cli):
    """Two SQLite backups in a local directory, then a migrated database with an empty catalog."""
    live = f"sqlite:///{tmp_path / 'live.sqlite'}"
    app = make_app(DATABASE_URL=live, **local_env)
    client, key = app.test_client(), new_key(app)
    names = []
    for i in range(2):
        client.post("/api/v1/send/message", json={**BODY, "subject": f"after {i}"}, headers={"X-Server-API-Key": key})
        assert cli(live, "backup", "run", env=local_env).exit_code == 0
        names.append(json.loads(cli(live, "backup", "list", "--json", env=local_env).stdout)[0]["name"])
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    make_app(DATABASE_URL=fresh, **local_env)
    return fresh, names, Path(local_env["BACKUP_DIR"])


def refused_restore(cli, fresh, name, env, target: Path):
    result = cli(fresh, "backup", "restore", name, "--target-url", f"sqlite:///{target}", "--yes", env=env)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not target.exists()  # nothing was written
    return result.output


def test_a_tampered_manifest_is_refused_before_anything_is_written(two_backups, cli, local_env, tmp_path):
    fresh, (first, _), storage = two_backups
    manifest = storage / "manifests" / f"{first}.sealed"
    blob = bytearray(manifest.read_bytes())
    blob[len(blob) // 2] ^= 0x20
    manifest.write_bytes(bytes(blob))
    output = refused_restore(cli, fresh, first, local_env, tmp_path / "target.sqlite")
    assert f"backup {first}: its manifest in storage cannot be trusted" in output and "failed authentication" in output
    listing = cli(fresh, "backup", "list", env=local_env)
    assert f"cannot read the manifest of {first}" in listing.output
    rebuilt = cli(fresh, "backup", "catalog", "rebuild", env=local_env)
    # The readable one is imported, the other is reported by name and not dropped silently.
    assert rebuilt.exit_code == 1 and "imported 1 backup(s)" in rebuilt.output
    assert f"{first}: not imported, its manifest cannot be read" in rebuilt.output


def test_a_manifest_sealed_by_another_key_is_refused(two_backups, cli, local_env, tmp_path):
    fresh, (first, _), storage = two_backups
    other = {**local_env, "BACKUP_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()}
    output = refused_restore(cli, fresh, first, other, tmp_path / "target.sqlite")
    assert "cannot be trusted: sealed with key" in output and "neither BACKUP_ENCRYPTION_KEY" in output


def test_a_forged_manifest_sealed_by_another_key_is_refused(two_backups, cli, local_env, tmp_path):
    """Someone with write access to storage but not the key writes a manifest of their own."""
    from controlplane.backups.manifests import write_manifest
    from controlplane.backups.models import Backup
    from controlplane.backups.sealing import Keyring
    from controlplane.backups.storage.local import LocalStorage
    from controlplane.timeutil import utcnow

    fresh, (first, _), storage = two_backups
    forged = Backup(name=first, kind="full", engine="sqlite", full_copy=True, status="succeeded",
                    started_at=utcnow(), finished_at=utcnow(), artefacts="[]", table_checksums="{}")
    write_manifest(LocalStorage(storage), Keyring(os.urandom(32)), forged)
    output = refused_restore(cli, fresh, first, local_env, tmp_path / "target.sqlite")
    assert "cannot be trusted: sealed with key" in output


def test_an_artefact_swapped_in_from_another_backup_is_refused(two_backups, cli, local_env, tmp_path):
    fresh, (first, second), storage = two_backups
    shutil.copy(storage / second / "database.sqlite.sealed", storage / first / "database.sqlite.sealed")
    output = refused_restore(cli, fresh, first, local_env, tmp_path / "target.sqlite")
    assert f"backup {first}, database.sqlite: frame 0 failed authentication" in output
    assert "belongs to another backup or artefact" in output
    verify = cli(fresh, "backup", "verify", first, env=local_env)
    assert verify.exit_code == 1 and "failed authentication" in verify.output


def test_a_manifest_swapped_in_from_another_backup_is_refused(two_backups, cli, local_env, tmp_path):
    fresh, (first, second), storage = two_backups
    shutil.copy(storage / "manifests" / f"{second}.sealed", storage / "manifests" / f"{first}.sealed")
    output = refused_restore(cli, fresh, first, local_env, tmp_path / "target.sqlite")
    assert "cannot be trusted" in output and "failed authentication" in output


def test_rebuild_keeps_catalog_rows_storage_no_longer_holds(two_backups, make_app, cli, local_env):
    fresh, (first, second), storage = two_backups
    assert cli(fresh, "backup", "catalog", "rebuild", env=local_env).exit_code == 0
    (storage / "manifests" / f"{first}.sealed").unlink()
    rebuilt = cli(fresh, "backup", "catalog", "rebuild", env=local_env)
    assert rebuilt.exit_code == 0 and "1 already catalogued" in rebuilt.stdout
    assert f"{first}: in the catalog, but storage has no manifest for it (kept)" in rebuilt.output
    app = make_app(DATABASE_URL=fresh, migrate=False, **local_env)
    from controlplane.backups.models import Backup

    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(Backup)).scalar_one() == 2
    assert "catalog only (no manifest in storage)" in cli(fresh, "backup", "list", env=local_env).stdout


def test_unknown_names_in_an_empty_catalog_are_explained(two_backups, cli, local_env):
    fresh, _, _ = two_backups
    result = cli(fresh, "backup", "restore", "20200101T000000Z-full-000000", "--target-url", "sqlite:///x", "--yes",
                 env=local_env)
    assert result.exit_code == 1 and "no backup '20200101T000000Z-full-000000' in the catalog or in storage" in \
        result.output
    result = cli(fresh, "backup", "show", "7", env=local_env)
    assert result.exit_code == 1 and "a backup only storage holds is named, not numbered" in result.output


def test_a_pre_migration_backup_is_recorded_as_a_full_copy(make_app, postgres_url):
    from controlplane.backups.operations import take_backup
    from controlplane.backups.status import backup_status, latest_full

    app = make_app(DATABASE_URL=postgres_url)
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        assert latest_full() is None
        row = take_backup(settings, "pre-migration")
        assert row.kind == "pre-migration" and row.full_copy is True
        assert latest_full().name == row.name
        assert backup_status(settings)["last_full"]["name"] == row.name


def test_plaintext_manifests_from_unreleased_builds_are_named_not_read(two_backups, cli, local_env):
    fresh, _, storage = two_backups
    old = storage / "20261130T031500Z-full-a1b2c3"
    old.mkdir()
    (old / "manifest.json").write_text('{"format": 1, "name": "20261130T031500Z-full-a1b2c3"}')
    (old / "database.sqlite.sealed").write_bytes(b"MGBAK1")
    (storage / "status-site").mkdir()  # the status page's static copy shares the storage
    (storage / "status-site" / "manifest.json").write_text("{}")
    message = "20261130T031500Z-full-a1b2c3: only a plaintext manifest.json (from an unreleased build)"
    assert message in cli(fresh, "backup", "list", env=local_env).output
    rebuilt = cli(fresh, "backup", "catalog", "rebuild", env=local_env)
    assert rebuilt.exit_code == 0 and "imported 2 backup(s)" in rebuilt.output and message in rebuilt.output
    assert "status-site" not in rebuilt.output


def test_list_shows_catalogued_and_storage_only_backups_together_newest_first(two_backups, cli, local_env):
    fresh, names, _ = two_backups
    assert cli(fresh, "backup", "run", env=local_env).exit_code == 0  # this database's own, catalogued
    rows = json.loads(cli(fresh, "backup", "list", "--json", env=local_env).stdout)
    assert [(r["in_catalog"], r["in_storage"]) for r in rows] == [(True, True), (False, True), (False, True)]
    assert [r["name"] for r in rows[1:]] == list(reversed(names))
