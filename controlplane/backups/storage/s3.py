"""S3-compatible storage through boto3: endpoint, bucket, prefix, multipart upload, SHA-256 checksums.

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile,
an instance role). Parts are uploaded as they fill, so memory stays at one part whatever the size.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Iterable, Iterator

from . import StorageError

PART_SIZE = 8 << 20  # S3's minimum part is 5 MiB


class S3Storage:
    name = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                                  config=Config(retries={"max_attempts": 5, "mode": "standard"},
                                                connect_timeout=10, read_timeout=60))
        self.client = client

    @classmethod
    def from_settings(cls, settings) -> "S3Storage":
        if not settings.backup_s3_bucket:
            raise StorageError("BACKUP_STORAGE=s3 needs BACKUP_S3_BUCKET", permanent=True)
        return cls(settings.backup_s3_bucket, settings.backup_s3_prefix, settings.backup_s3_endpoint,
                   settings.backup_s3_region)

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} ({self.endpoint_url})" if self.endpoint_url else where

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, blocks: Iterable[bytes], content_type: str | None = None) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        name = self._key(key)
        extra = {"ContentType": content_type} if content_type else {}
        upload_id = None
        parts, buffer, written = [], bytearray(), 0
        try:
            for block in blocks:
                buffer += block
                written += len(block)
                if len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=name, ChecksumAlgorithm="SHA256", **extra)["UploadId"]
                    parts.append(self._upload_part(name, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            if upload_id is None:  # small: one request
                self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(buffer),
                                       ChecksumSHA256=_sha256_b64(buffer), **extra)
                return written
            if buffer:
                parts.append(self._upload_part(name, upload_id, len(parts) + 1, bytes(buffer)))
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
            return written
        except BaseException as exc:
            if upload_id is not None:
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
                except (BotoCoreError, ClientError):
                    pass
            if isinstance(exc, (BotoCoreError, ClientError)):
                raise StorageError(f"upload of s3://{self.bucket}/{name} failed: {exc}") from exc
            raise

    def _upload_part(self, name: str, upload_id: str, number: int, data: bytes) -> dict:
        checksum = _sha256_b64(data)
        answer = self.client.upload_part(Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number,
                                         Body=data, ChecksumSHA256=checksum)
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

    def open(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        name = self._key(key)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]
        except ClientError as exc:
            missing = exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}", permanent=missing) from exc
        except BotoCoreError as exc:
            raise StorageError(f"s3://{self.bucket}/{name}: {exc}") from exc
        return _chunks(body)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self, prefix: str = "") -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        start = len(self._key(""))
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
            return sorted(item["Key"][start:] for page in pages for item in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"listing s3://{self.bucket}/{self._key(prefix)} failed: {exc}") from exc


def _chunks(body) -> Iterator[bytes]:
    with body:
        yield from body.iter_chunks(1 << 20)


def _sha256_b64(data) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()
