"""Content-addressed blob storage on local disk (``<store>/blobs/sha256/<digest>``).

Writes are staged in a temporary file in the same directory, hashed, then renamed into place,
so a half-written blob is never visible under its digest; a file hashed by its writer is
synced and hard-linked into place instead of copied; reads verify the digest (D5).
Re-putting an existing blob refreshes its mtime, which the garbage collector's grace period
counts from (D6).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from envstore.errors import NotFound
from envstore.storage.blobstore import (
    CHUNK,
    BlobInfo,
    BlobStore,
    CorruptBlob,
    check_digest,
    file_digest,
)

__all__ = ["BlobStore", "CorruptBlob", "LocalBlobStore"]

# link(2) errors that mean "not here": another filesystem, or one without hard links
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / check_digest(digest)

    def _refresh(self, target: Path) -> bool:
        try:
            os.utime(target)
        except FileNotFoundError:
            return False
        return True

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._path(digest)
        if self._refresh(target):
            return digest
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".staging-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def put_file(self, path: Path, digest: str) -> None:
        target = self._path(digest)
        if target.exists():
            if file_digest(path) != digest:  # the staged file is wrong even if the blob is not
                raise CorruptBlob(f"staged file {path.name} does not match digest {digest[:12]}")
            if self._refresh(target):
                return
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".staging-")
        try:
            hasher = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, path.open("rb") as source:
                while block := source.read(CHUNK):
                    hasher.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if hasher.hexdigest() != digest:
                raise CorruptBlob(f"staged file {path.name} does not match digest {digest[:12]}")
            Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_hashed_file(self, path: Path, digest: str) -> None:
        """Made durable, then hard-linked under its digest (atomic: the name appears with
        every byte); copied and verified when the staged file is on another filesystem."""
        target = self._path(digest)
        if self._refresh(target):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as handle:  # on disk before anything names it
            os.fsync(handle.fileno())
        path.chmod(0o600)  # as mkstemp makes the blobs that put_file writes
        try:
            os.link(path, target)
        except FileExistsError:  # another writer stored the same bytes meanwhile
            self._refresh(target)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            self.put_file(path, digest)
        else:
            os.utime(target)  # the collector's grace period counts from now

    def get_bytes(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact blob {digest[:12]} is missing from the store") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"artifact blob {digest[:12]} is corrupted (digest mismatch)")
        return data

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        """Verify the whole file first, then stream from the same open handle."""
        path = self._path(digest)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"artifact blob {digest[:12]} is missing from the store") from None
        try:
            if hashlib.file_digest(handle, "sha256").hexdigest() != digest:
                raise CorruptBlob(f"artifact blob {digest[:12]} is corrupted (digest mismatch)")
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return _chunks(handle)

    def download_url(self, digest: str, filename: str, media_type: str) -> str | None:
        return None

    def size(self, digest: str) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"artifact blob {digest[:12]} is missing from the store") from None

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[BlobInfo]:
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            if len(entry.name) != 64 or entry.name.startswith("."):
                continue
            stat = entry.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
            yield BlobInfo(entry.name, stat.st_size, modified)

    def remove_stale_staging(self, older_than: float) -> int:
        """Remove staging files of writers that died (older than ``older_than`` epoch seconds)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for entry in os.scandir(self.root):
            if entry.name.startswith(".staging-") and entry.stat().st_mtime < older_than:
                removed += entry.stat().st_size
                Path(entry.path).unlink(missing_ok=True)
        return removed

    def disk_path(self, digest: str) -> Path:
        return self._path(digest)


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    try:
        while block := handle.read(CHUNK):
            yield block
    finally:
        handle.close()
