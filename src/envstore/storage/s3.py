"""S3 (or any S3-compatible server) blob storage through boto3.

Objects live at ``<prefix><digest>``. An upload is one ``PutObject`` carrying the SHA-256
checksum: S3 makes the object visible only once it is complete and rejects bytes that do not
match, so no half-written or wrong object is ever visible (D4). Every call is retried with
exponential backoff for up to ``retry_seconds`` (S3 blips must not fail builds), then raises
:class:`Unavailable`, so a build always reaches a terminal state. Reads through the API verify
the digest; downloads are short-lived presigned URLs that ask S3 for the checksum header.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from envstore.errors import NotFound, Unavailable
from envstore.storage.blobstore import BlobInfo, CorruptBlob, check_digest, file_digest

__all__ = ["S3BlobStore"]

log = logging.getLogger("envstore.storage.s3")
T = TypeVar("T")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_BAD_CHECKSUM = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "blobs/sha256/",
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        presign_seconds: int = 300,
        retry_seconds: float = 120.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.presign_seconds = presign_seconds
        self.retry_seconds = retry_seconds
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
                signature_version="s3v4",
            ),
        )

    def _key(self, digest: str) -> str:
        return self.prefix + check_digest(digest)

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call``, retrying transient failures with backoff until ``retry_seconds``."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.25
        while True:
            try:
                return call()
            except ClientError as exc:
                code = _code(exc)
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code in _MISSING or code in _BAD_CHECKSUM or 400 <= status < 500:
                    raise
                problem: Exception = exc
            except BotoCoreError as exc:
                problem = exc
            if time.monotonic() + delay > deadline:
                raise Unavailable(f"object storage failed to {what}: {problem}") from None
            log.warning("object storage: %s failed (%s); retrying in %.1fs", what, problem, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._put(digest, lambda: io.BytesIO(data))
        return digest

    def put_file(self, path: Path, digest: str) -> None:
        if file_digest(path) != check_digest(digest):
            raise CorruptBlob(f"staged file {path.name} does not match digest {digest[:12]}")
        self._put(digest, lambda: path.open("rb"))

    def put_hashed_file(self, path: Path, digest: str) -> None:
        # The upload reads the file anyway, and not every S3-compatible server checks the
        # checksum it is sent (moto does not): verified here as well.
        self.put_file(path, digest)

    def _put(self, digest: str, opener: Callable[[], BinaryIO]) -> None:
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()

        def upload() -> None:
            with opener() as body:
                try:
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=self._key(digest),
                        Body=body,
                        ChecksumSHA256=checksum,
                        ContentType="application/octet-stream",
                    )
                except ClientError as exc:
                    if _code(exc) in _BAD_CHECKSUM:
                        raise CorruptBlob(f"object storage rejected blob {digest[:12]}") from None
                    raise

        self._retry(f"store blob {digest[:12]}", upload)

    def get_bytes(self, digest: str) -> bytes:
        def fetch() -> bytes:
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise NotFound(f"artifact blob {digest[:12]} is missing") from None
                raise
            data: bytes = answer["Body"].read()
            return data

        data = self._retry(f"read blob {digest[:12]}", fetch)
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"artifact blob {digest[:12]} is corrupted (digest mismatch)")
        return data

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        return iter([self.get_bytes(digest)])

    def download_url(self, digest: str, filename: str, media_type: str) -> str | None:
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self._key(digest),
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
                "ResponseContentType": media_type,
                "ChecksumMode": "ENABLED",
            },
            ExpiresIn=self.presign_seconds,
        )
        return url

    def _head(self, digest: str) -> dict[str, Any] | None:
        def head() -> dict[str, Any] | None:
            try:
                answer: dict[str, Any] = self.client.head_object(
                    Bucket=self.bucket, Key=self._key(digest)
                )
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
            return answer

        return self._retry(f"look up blob {digest[:12]}", head)

    def size(self, digest: str) -> int:
        head = self._head(digest)
        if head is None:
            raise NotFound(f"artifact blob {digest[:12]} is missing")
        return int(head["ContentLength"])

    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def delete(self, digest: str) -> None:
        key = self._key(digest)
        self._retry(
            f"delete blob {digest[:12]}",
            lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
        )

    def list_blobs(self) -> Iterator[BlobInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                name = str(item["Key"])[len(self.prefix) :]
                if len(name) == 64:
                    modified = item["LastModified"].astimezone(UTC).replace(tzinfo=None)
                    yield BlobInfo(name, int(item["Size"]), modified)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
