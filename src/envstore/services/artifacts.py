"""Storing and reading a build's artifacts (lockfile, pinned YAML, archive, OCI image).

Artifact files are uploaded (verified by digest) *before* the publishing transaction links them
to the build. Inside that transaction, before the links are written, the publisher holds each
blob's ``blob_hold`` row and checks that the blob is still there, storing it again if not. The
garbage collector holds the same row from its last "is it linked?" check until its delete has
committed, so the two are ordered by the database: either the collector deleted first and the
publisher sees the blob missing and stores it again, or the publisher linked first and the
collector sees the link (D6). No grace period is needed for that; it only saves re-uploads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envstore.core.builds import ArtifactStatus
from envstore.core.lockfile import Lockfile
from envstore.db.models import ArtifactJob, BlobHold, BuildArtifact, utcnow
from envstore.errors import InvalidInput, NotFound
from envstore.services.common import get_build
from envstore.storage.blobstore import BlobStore

__all__ = [
    "StagedBlob",
    "artifact_bytes",
    "artifact_digest",
    "explicit_text",
    "hold_and_verify",
    "hold_blob",
    "lockfile_text",
    "store_artifact_files",
]


@dataclass(frozen=True)
class StagedBlob:
    """A blob a publisher is about to link, with what it takes to store it (again)."""

    digest: str
    path: Path | None = None  # a staged file, or
    data: bytes | None = None  # bytes in memory

    def store(self, blobs: BlobStore) -> None:
        if self.data is not None:
            blobs.put_bytes(self.data)
        else:
            assert self.path is not None
            blobs.put_file(self.path, self.digest)


def artifact_digest(db: Session, build_id: int, artifact_type: str) -> tuple[str, int]:
    """The blob digest and size of one artifact of a build; NotFound if it has none."""
    build = get_build(db, build_id)
    row = db.execute(
        select(BuildArtifact.key, BuildArtifact.size).where(
            BuildArtifact.build_id == build.id, BuildArtifact.artifact_type == artifact_type
        )
    ).first()
    if row is None:
        raise NotFound(_missing(db, build_id, build.status, artifact_type))
    return str(row[0]), int(row[1])


def _missing(db: Session, build_id: int, status: str, artifact_type: str) -> str:
    """Why a build has no ``artifact_type`` now, naming the state of its pack job."""
    job = db.execute(
        select(ArtifactJob.status, ArtifactJob.info, ArtifactJob.kinds).where(
            ArtifactJob.build_id == build_id
        )
    ).first()
    if job is None or artifact_type not in (job[2] or []):
        return f"build {build_id} has no {artifact_type} artifact (status {status})"
    if job[0] == ArtifactStatus.FAILED:
        return (
            f"build {build_id} has no {artifact_type} artifact: packing failed ({job[1]}); "
            f"`envstore build rebuild-artifacts {build_id}` tries again"
        )
    return (
        f"build {build_id} has no {artifact_type} artifact yet: it is made after the build "
        f"completed and is {job[0]} now; retry shortly (or wait with ?wait=S)"
    )


def artifact_bytes(db: Session, blobs: BlobStore, build_id: int, artifact_type: str) -> bytes:
    """The verified bytes of one artifact of a build; NotFound if the build has none."""
    digest, _ = artifact_digest(db, build_id, artifact_type)
    return blobs.get_bytes(digest)


def lockfile_text(db: Session, blobs: BlobStore, build_id: int) -> str:
    return artifact_bytes(db, blobs, build_id, "LOCKFILE").decode()


def explicit_text(db: Session, blobs: BlobStore, build_id: int) -> str:
    """``conda create --file``'s ``@EXPLICIT`` list of a conda build, from its lockfile."""
    lock = Lockfile.from_text(lockfile_text(db, blobs, build_id))
    conda = [p for p in lock.sorted_packages() if p.manager == "conda"]
    if not conda:
        raise InvalidInput(f"build {build_id} has no conda packages; use its lockfile instead")
    lines = ["# platform: " + lock.platform, "@EXPLICIT"]
    lines += [f"{p.url}#{p.md5 or p.sha256}" for p in conda]
    return "\n".join(lines) + "\n"


def store_artifact_files(
    blobs: BlobStore, files: list[dict[str, Any]], *, hashed: bool = False
) -> None:
    """Upload every staged artifact file before anything links them: verified by digest, or
    with ``hashed`` (a pack job's files, whose digests were computed on the bytes as they
    were written) stored without reading them again where the store can."""
    for item in files:
        path, digest = Path(item["path"]), str(item["sha256"])
        if hashed:
            blobs.put_hashed_file(path, digest)
        else:
            blobs.put_file(path, digest)


def hold_blob(db: Session, digest: str) -> None:
    """Lock blob ``digest``'s ``blob_hold`` row until the transaction ends (creating the row).

    The UPDATE comes first: on SQLite it opens the write transaction, so every read after it
    sees all that was committed before; on PostgreSQL it waits for any other holder."""
    now = utcnow()
    if db.execute(update(BlobHold).where(BlobHold.digest == digest).values(held_on=now)).rowcount:
        return
    try:
        with db.begin_nested():
            db.add(BlobHold(digest=digest, held_on=now))
    except IntegrityError:  # another transaction created it meanwhile and has committed
        db.execute(update(BlobHold).where(BlobHold.digest == digest).values(held_on=now))


def hold_and_verify(db: Session, blobs: BlobStore, staged: list[StagedBlob]) -> int:
    """Inside the publishing transaction, before its links: hold every blob about to be linked
    and store again any the garbage collector has removed. Returns how many were stored again.

    Rows are held in digest order, as the collector holds them, so two holders never deadlock."""
    restored = 0
    for item in sorted({s.digest: s for s in staged}.values(), key=lambda s: s.digest):
        hold_blob(db, item.digest)
        if item.data is not None or not blobs.exists(item.digest):
            restored += item.data is None
            item.store(blobs)  # in-memory texts are small: storing also refreshes their age
    return restored
