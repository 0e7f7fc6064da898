"""Reading a build's stored artifacts (lockfile, pinned YAML)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from envstore.db.models import BuildArtifact
from envstore.errors import NotFound
from envstore.services.common import get_build
from envstore.storage.local import BlobStore

__all__ = ["artifact_bytes", "lockfile_text"]


def artifact_bytes(db: Session, blobs: BlobStore, build_id: int, artifact_type: str) -> bytes:
    """The verified bytes of one artifact of a build; NotFound if the build has none."""
    build = get_build(db, build_id)
    key = db.scalar(
        select(BuildArtifact.key).where(
            BuildArtifact.build_id == build.id, BuildArtifact.artifact_type == artifact_type
        )
    )
    if key is None:
        raise NotFound(f"build {build_id} has no {artifact_type} artifact (status {build.status})")
    return blobs.get_bytes(key)


def lockfile_text(db: Session, blobs: BlobStore, build_id: int) -> str:
    return artifact_bytes(db, blobs, build_id, "LOCKFILE").decode()
