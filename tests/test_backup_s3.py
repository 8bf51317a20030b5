"""The S3 backend against a real local S3-compatible server (moto's server mode), not a patched boto3."""
from __future__ import annotations

import hashlib
import os

import pytest

from controlplane.backups.operations import BackupError, restore_backup, take_backup, verify_backup
from controlplane.backups.storage import StorageError
from controlplane.backups.storage.s3 import PART_SIZE, S3Storage
from tests.conftest import S3_BUCKET as BUCKET

def test_large_objects_go_up_in_parts_and_come_back_identical(s3_endpoint):
    storage = S3Storage(BUCKET, "ci/prefix", endpoint_url=s3_endpoint)
    blocks = [os.urandom(1 << 20) for _ in range(2 * PART_SIZE // (1 << 20) + 3)]  # 2 full parts and a tail
    assert storage.put("one/big.sealed", iter(blocks)) == sum(map(len, blocks))
    head = storage.client.head_object(Bucket=BUCKET, Key="ci/prefix/one/big.sealed", ChecksumMode="ENABLED")
    assert head["ContentLength"] == sum(map(len, blocks))
    assert "-3" in head["ETag"]  # three parts
    got = hashlib.sha256()
    for block in storage.open("one/big.sealed"):
        got.update(block)
    assert got.hexdigest() == hashlib.sha256(b"".join(blocks)).hexdigest()
    storage.delete("one/big.sealed")
    with pytest.raises(StorageError) as missing:
        storage.open("one/big.sealed")
    assert missing.value.permanent


def test_a_failed_upload_leaves_no_half_object(s3_endpoint):
    storage = S3Storage(BUCKET, endpoint_url=s3_endpoint)

    def breaks_midway():
        yield os.urandom(PART_SIZE)
        raise RuntimeError("the dump died")

    with pytest.raises(RuntimeError):
        storage.put("half.sealed", breaks_midway())
    listed = storage.client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert listed == [] and storage.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_backup_verify_restore_through_s3(make_app, s3_endpoint, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'live.db'}", BACKUP_STORAGE="s3",
                   BACKUP_S3_BUCKET=BUCKET, BACKUP_S3_PREFIX="prod", BACKUP_S3_ENDPOINT=s3_endpoint)
    settings = app.extensions["controlplane.settings"]
    with app.app_context():
        row = take_backup(settings, "full")
        assert row.storage == "s3" and row.location == f"s3://{BUCKET}/prod ({s3_endpoint})"
        keys = {o["Key"] for o in S3Storage(BUCKET, endpoint_url=s3_endpoint).client.list_objects_v2(
            Bucket=BUCKET)["Contents"]}
        assert keys == {f"prod/{row.name}/database.sqlite.sealed", f"prod/manifests/{row.name}.sealed"}
        verify_backup(settings, row)
        report = restore_backup(settings, row, f"sqlite:///{tmp_path / 'restored.db'}")
        assert report.problems == [] and report.tables > 0


def test_an_unreachable_bucket_is_a_clear_failure(make_app, s3_endpoint, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'live.db'}", BACKUP_STORAGE="s3",
                   BACKUP_S3_BUCKET="no-such-bucket", BACKUP_S3_ENDPOINT=s3_endpoint)
    with app.app_context():
        with pytest.raises(BackupError, match="no-such-bucket.*NoSuchBucket"):
            take_backup(app.extensions["controlplane.settings"], "full")
