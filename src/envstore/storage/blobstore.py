"""The BlobStore port: content-addressed artifact storage, chosen by settings.

Every blob is named by the sha256 of its bytes. Writers hand over a staged file or bytes and
the digest they expect; the store verifies it before the blob becomes visible under that name
(nothing half-written is ever readable), unless the writer hashed the bytes as it wrote them
(``put_hashed_file``): reading 200 MB again to check what was just hashed proves nothing more
than the write did, since anything that could change the file in between could as well write
into the store. Readers get bytes verified against the digest, so a
blob corrupted at rest is never served as valid (RELIABILITY.md D5). Implementations:
:mod:`.local` (a directory), :mod:`.s3` (boto3), :mod:`.memory` (tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Protocol

from envstore.errors import NotFound

__all__ = ["CHUNK", "BlobInfo", "BlobStore", "CorruptBlob", "check_digest", "file_digest"]

CHUNK = 1024 * 1024


class CorruptBlob(NotFound):
    """A stored blob no longer matches its digest: it is never served as valid."""


class BlobInfo:
    """A stored blob as the garbage collector sees it."""

    __slots__ = ("digest", "modified", "size")

    def __init__(self, digest: str, size: int, modified: datetime) -> None:
        self.digest = digest
        self.size = size
        self.modified = modified  # naive UTC; refreshed when a writer re-puts the same bytes


class BlobStore(Protocol):
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its sha256 hex digest."""
        ...

    def put_file(self, path: Path, digest: str) -> None:
        """Store the file at ``path``; CorruptBlob if its bytes do not hash to ``digest``."""
        ...

    def put_hashed_file(self, path: Path, digest: str) -> None:
        """Store the file at ``path`` whose ``digest`` its writer computed on the bytes as it
        wrote them (a pack job's archive and layer): a store that can avoid reading it again
        does (the local store links it into place); one that reads it anyway (an upload)
        still verifies it. ``path`` stays where it is."""
        ...

    def get_bytes(self, digest: str) -> bytes:
        """Return the blob, verified against ``digest``."""
        ...

    def iter_verified(self, digest: str) -> Iterator[bytes]:
        """The blob in chunks; checked against ``digest`` before the first chunk is given."""
        ...

    def download_url(self, digest: str, filename: str, media_type: str) -> str | None:
        """A short-lived URL the client may fetch directly, or None to stream through the API."""
        ...

    def size(self, digest: str) -> int: ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None: ...

    def list_blobs(self) -> Iterator[BlobInfo]: ...


def check_digest(digest: str) -> str:
    """``digest`` if it is a lowercase sha256 hex string; NotFound otherwise (never a path)."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise NotFound(f"no blob {digest[:80]!r}")
    return digest


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
