"""The read-only OCI registry's lookups: repository ``<namespace>/<environment>``, tag = build
key, ``latest`` = the current build, blobs only when a manifest of that repository names them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from envstore.core.builds import BuildStatus
from envstore.db.models import Build, BuildArtifact, Environment
from envstore.errors import InvalidInput, NotFound
from envstore.services.common import get_environment
from envstore.storage.blobstore import BlobStore

__all__ = ["find_manifest", "manifest_blobs", "repository_has_blob", "repository_tags"]


def _environment(db: Session, namespace: str, name: str) -> Environment:
    try:
        return get_environment(db, namespace, name)
    except (NotFound, InvalidInput):
        raise NotFound(f"repository {namespace}/{name} not found") from None


def _manifests(db: Session, env: Environment) -> list[tuple[int, str | None, str]]:
    """(build id, build key, manifest digest) of the environment's live image builds."""
    rows = db.execute(
        select(Build.id, Build.build_key, BuildArtifact.key)
        .join(BuildArtifact, BuildArtifact.build_id == Build.id)
        .where(
            Build.environment_id == env.id,
            Build.status == BuildStatus.COMPLETED,
            Build.deleted_on.is_(None),
            BuildArtifact.artifact_type == "DOCKER_MANIFEST",
        )
        .order_by(Build.id)
    ).all()
    return [(r[0], r[1], str(r[2])) for r in rows]


def find_manifest(db: Session, namespace: str, name: str, reference: str) -> str:
    """The manifest digest (hex) that ``reference`` (tag, ``latest`` or digest) names."""
    env = _environment(db, namespace, name)
    manifests = _manifests(db, env)
    for build_id, key, digest in manifests:
        if (
            reference == f"sha256:{digest}"
            or reference == key
            or (reference == "latest" and build_id == env.current_build_id)
        ):
            return digest
    raise NotFound(f"manifest {reference} not found in {namespace}/{name}")


def repository_tags(db: Session, namespace: str, name: str) -> list[str]:
    env = _environment(db, namespace, name)
    tags = [key for build_id, key, _ in _manifests(db, env) if key]
    if any(build_id == env.current_build_id for build_id, _, _ in _manifests(db, env)):
        tags.append("latest")
    return sorted(tags)


def manifest_blobs(manifest: bytes) -> list[str]:
    """The config and layer digests (hex) a manifest refers to."""
    data: Any = json.loads(manifest)
    descriptors = [data.get("config") or {}, *(data.get("layers") or [])]
    return [str(d["digest"]).removeprefix("sha256:") for d in descriptors if "digest" in d]


def repository_has_blob(
    db: Session, blobs: BlobStore, namespace: str, name: str, digest: str
) -> bool:
    env = _environment(db, namespace, name)
    for _, _, manifest in _manifests(db, env):
        if digest == manifest or digest in manifest_blobs(blobs.get_bytes(manifest)):
            return True
    return False
