"""Content-addressed blob storage on local disk (``<store>/blobs/sha256/<digest>``).

Writes are staged in a temporary file, hashed while written, then renamed into place, so a
half-written blob is never visible under its digest; reads verify the digest (D5).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from envstore.errors import NotFound

__all__ = ["BlobStore", "CorruptBlob", "LocalBlobStore"]


class CorruptBlob(NotFound):
    """A stored blob no longer matches its digest: it is never served as valid."""


class BlobStore(Protocol):
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its sha256 hex digest."""
        ...

    def get_bytes(self, digest: str) -> bytes:
        """Return the blob, verified against ``digest``."""
        ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None: ...


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise NotFound(f"no blob {digest!r}")
        return self.root / digest

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._path(digest)
        if target.exists():
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

    def get_bytes(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact blob {digest[:12]} is missing from the store") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptBlob(f"artifact blob {digest[:12]} is corrupted (digest mismatch)")
        return data

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)
