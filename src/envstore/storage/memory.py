"""An in-memory BlobStore for unit tests: same contract as the real stores, no disk."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from envstore.errors import NotFound
from envstore.storage.blobstore import BlobInfo, CorruptBlob, check_digest

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.modified: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self.blobs[digest] = bytes(data)
            self.modified[digest] = datetime.now(UTC).replace(tzinfo=None)
        return digest

    def put_file(self, path: Path, digest: str) -> None:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != check_digest(digest):
            raise CorruptBlob(f"staged file {path.name} does not match digest {digest[:12]}")
        self.put_bytes(data)

    def put_hashed_file(self, path: Path, digest: str) -> None:
        self.put_file(path, digest)  # in memory, a copy is made anyway: verified on the way

    def get_bytes(self, digest: str) -> bytes:
        try:
            data = self.blobs[check_digest(digest)]
        except KeyError:
            raise NotFound(f"artifact blob {digest[:12]} is missing from the store") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"artifact blob {digest[:12]} is corrupted (digest mismatch)")
        return data

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        return iter([self.get_bytes(digest)])

    def download_url(self, digest: str, filename: str, media_type: str) -> str | None:
        return None

    def size(self, digest: str) -> int:
        return len(self.get_bytes(digest))

    def exists(self, digest: str) -> bool:
        return check_digest(digest) in self.blobs

    def delete(self, digest: str) -> None:
        with self._lock:
            self.blobs.pop(check_digest(digest), None)

    def list_blobs(self) -> Iterator[BlobInfo]:
        with self._lock:
            items = list(self.blobs.items())
        for digest, data in items:
            yield BlobInfo(digest, len(data), self.modified[digest])
