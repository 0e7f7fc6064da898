"""Storing and reading a build's artifacts (lockfile, pinned YAML, archive, OCI image).

Artifact files are uploaded (verified by digest) *before* the publishing transaction links them
to the build, and checked again after it: if the garbage collector removed a blob that was
not linked yet, it is stored again from the staged file (D6).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from envstore.core.builds import ArtifactStatus
from envstore.core.lockfile import Lockfile
from envstore.db.models import ArtifactJob, BuildArtifact
from envstore.errors import InvalidInput, NotFound
from envstore.services.common import get_build
from envstore.storage.blobstore import BlobStore

__all__ = [
    "StoredArtifact",
    "artifact_bytes",
    "artifact_digest",
    "ensure_stored",
    "explicit_text",
    "lockfile_text",
    "store_artifact_files",
]


@dataclass(frozen=True)
class StoredArtifact:
    artifact_type: str
    digest: str
    size: int


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


def store_artifact_files(blobs: BlobStore, files: list[dict[str, Any]]) -> list[StoredArtifact]:
    """Upload every staged artifact file (digest verified); return the ones to link."""
    linked = []
    for item in files:
        blobs.put_file(Path(item["path"]), str(item["sha256"]))
        if item.get("artifact_type"):
            linked.append(StoredArtifact(item["artifact_type"], item["sha256"], int(item["size"])))
    return linked


def ensure_stored(blobs: BlobStore, files: list[dict[str, Any]], texts: list[str]) -> int:
    """After linking: store again whatever a concurrent GC removed; return how many."""
    restored = 0
    for item in files:
        if not blobs.exists(item["sha256"]):
            blobs.put_file(Path(item["path"]), item["sha256"])
            restored += 1
    for text in texts:
        blobs.put_bytes(text.encode())  # idempotent; refreshes the blob's age
    return restored
