"""Use cases of pack jobs: a COMPLETED build's archive and image, made after the build.

A build is COMPLETED once its prefix is installed and published with its lockfile, pinned
YAML and log; the relocatable archive and the OCI image (``core.builds.FILE_ARTIFACTS``) are
made afterwards by an ``artifact_job`` row that the same workers claim when no build is
queued (a lower priority), exactly like builds: a conditional UPDATE, a heartbeat, the reaper
for a lost worker. The job's state is shown on the build (``artifacts_status``); a failed
one never touches the build's own status and is queued again by ``rebuild-artifacts``.

Two builds with the same lockfile and packing settings (``pack_key``) share the blobs: the
second job links the first one's artifacts instead of packing again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from envstore.core.builds import ArtifactStatus, BuildStatus, packed_artifacts
from envstore.db.models import (
    ArtifactJob,
    Build,
    BuildArtifact,
    Environment,
    Namespace,
    Specification,
    utcnow,
)
from envstore.errors import Conflict, InvalidInput
from envstore.services.artifacts import StagedBlob, hold_and_verify, hold_blob
from envstore.services.common import get_build
from envstore.services.registry import manifest_blobs
from envstore.services.settings import build_artifacts, effective_policy
from envstore.settings import Settings
from envstore.storage.blobstore import BlobStore

__all__ = [
    "PACK_FORMAT",
    "ClaimedPack",
    "PackedBlobs",
    "artifact_state",
    "claim_pack",
    "effective_build_artifacts",
    "fail_pack",
    "next_packs",
    "pack_heartbeat",
    "pack_key",
    "packing_jobs",
    "queue_artifacts",
    "rebuild_artifacts",
    "record_packed",
    "requeue_pack_or_fail",
    "reusable_artifacts",
]

# Part of every pack key: a change to what the packer writes (layout, compression, and the
# chunks the threaded gzip is fed, which its blocks follow) must not reuse blobs written by the
# previous one.
PACK_FORMAT = 3


@dataclass(frozen=True)
class ClaimedPack:
    build_id: int
    attempt: int
    namespace: str
    environment: str
    build_key: str
    kinds: list[str]
    variables: dict[str, str]
    pack_key: str | None


def effective_build_artifacts(
    db: Session, settings: Settings, namespace: str, environment: str
) -> list[str]:
    """The ``build_artifacts`` that apply to a build of ``namespace/environment``: the policy
    setting merged global → namespace → environment, else the server's
    ``ENVSTORE_BUILD_ARTIFACTS``. :func:`envstore.core.builds.packed_artifacts` turns the result
    into the pack job's work."""
    return build_artifacts(effective_policy(db, namespace, environment), settings.build_artifacts)


def queue_artifacts(db: Session, build_id: int, kinds: Sequence[str]) -> bool:
    """In the publishing transaction: queue the pack job of ``build_id`` (no commit)."""
    chosen = packed_artifacts(kinds)
    if not chosen:
        return False
    db.add(ArtifactJob(build_id=build_id, status=ArtifactStatus.QUEUED, kinds=chosen, attempt=0))
    return True


def pack_key(settings: Settings, lockfile_digest: str, kinds: Sequence[str], variables: Any) -> str:
    """What a pack job's files depend on: builds with the same key get the same artifacts."""
    base = settings.oci_base_layer
    base_stat = base.stat() if base is not None and base.exists() else None
    described = {
        "format": PACK_FORMAT,
        "lockfile": lockfile_digest,
        "kinds": sorted(kinds),
        "variables": variables or {},
        "oci_prefix": settings.oci_prefix,
        "layer": settings.oci_layer_compression,
        "zstd_level": settings.oci_zstd_level,
        "base": [str(base), base_stat.st_size, base_stat.st_mtime_ns] if base_stat else None,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def next_packs(db: Session, limit: int = 10) -> list[int]:
    return list(
        db.scalars(
            select(ArtifactJob.build_id)
            .where(ArtifactJob.status == ArtifactStatus.QUEUED)
            .order_by(ArtifactJob.build_id)
            .limit(limit)
        )
    )


def claim_pack(
    db: Session, settings: Settings, build_id: int, worker_id: str
) -> ClaimedPack | None:
    """Move a QUEUED pack job to PACKING for this worker; None if someone else has it, or if
    its build is gone meanwhile (then the job ends FAILED)."""
    claimed = db.execute(
        update(ArtifactJob)
        .where(ArtifactJob.build_id == build_id, ArtifactJob.status == ArtifactStatus.QUEUED)
        .values(
            status=ArtifactStatus.PACKING,
            worker_id=worker_id,
            attempt=ArtifactJob.attempt + 1,
            heartbeat_on=utcnow(),
            info=None,
        )
    )
    db.commit()
    if claimed.rowcount != 1:
        return None
    row = db.execute(
        select(
            ArtifactJob.attempt,
            ArtifactJob.kinds,
            Build.build_key,
            Build.status,
            Build.deleted_on,
            Namespace.name,
            Environment.name,
            Specification.spec,
        )
        .join(Build, Build.id == ArtifactJob.build_id)
        .join(Environment, Environment.id == Build.environment_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .join(Specification, Specification.id == Build.specification_id)
        .where(ArtifactJob.build_id == build_id)
    ).one()
    attempt, kinds, key, status, deleted, namespace, environment, spec = row
    if status != BuildStatus.COMPLETED or deleted is not None or not key:
        fail_pack(db, build_id, worker_id, "the build is no longer available")
        return None
    variables = {str(k): str(v) for k, v in ((spec or {}).get("variables") or {}).items()}
    lock = db.scalar(
        select(BuildArtifact.key).where(
            BuildArtifact.build_id == build_id, BuildArtifact.artifact_type == "LOCKFILE"
        )
    )
    packed = pack_key(settings, lock, kinds, variables) if lock else None
    if packed is not None:
        db.execute(
            update(ArtifactJob).where(ArtifactJob.build_id == build_id).values(pack_key=packed)
        )
        db.commit()
    return ClaimedPack(
        build_id, attempt, namespace, environment, key, list(kinds), variables, packed
    )


def reusable_artifacts(db: Session, claimed: ClaimedPack) -> tuple[int, list[tuple[str, str, int]]]:
    """Another live build's packed artifacts with the same pack key: (its id, rows), or
    (0, []) when there is none to reuse."""
    if claimed.pack_key is None:
        return 0, []
    donors = db.scalars(
        select(ArtifactJob.build_id)
        .join(Build, Build.id == ArtifactJob.build_id)
        .where(
            ArtifactJob.pack_key == claimed.pack_key,
            ArtifactJob.status == ArtifactStatus.COMPLETED,
            ArtifactJob.build_id != claimed.build_id,
            Build.deleted_on.is_(None),
        )
        .order_by(ArtifactJob.build_id.desc())
        .limit(1)
    ).all()
    for donor in donors:
        rows = db.execute(
            select(BuildArtifact.artifact_type, BuildArtifact.key, BuildArtifact.size).where(
                BuildArtifact.build_id == donor,
                BuildArtifact.artifact_type.in_(claimed.kinds),
            )
        ).all()
        if {row[0] for row in rows} == set(claimed.kinds):
            return donor, [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
    return 0, []


def pack_heartbeat(db: Session, build_id: int, worker_id: str) -> bool:
    """Refresh the job's heartbeat; False when it is no longer this worker's."""
    done = db.execute(
        update(ArtifactJob)
        .where(
            ArtifactJob.build_id == build_id,
            ArtifactJob.worker_id == worker_id,
            ArtifactJob.status == ArtifactStatus.PACKING,
        )
        .values(heartbeat_on=utcnow())
    )
    db.commit()
    return bool(done.rowcount)


def record_packed(
    db: Session,
    blobs: BlobStore,
    claimed: ClaimedPack,
    worker_id: str,
    packed: PackedBlobs,
    info: str,
) -> bool | None:
    """Link the packed (uploaded, verified) blobs to the build and end the job COMPLETED.

    Every blob about to be linked is held first, as a publish holds its blobs, so a racing
    garbage collection either finishes before (a packed file is then stored again) or waits
    (D6). False, and nothing linked, when the job was taken from this worker or the build was
    deleted meanwhile; None when a reused blob is gone (the caller packs instead)."""
    build_id, rows = claimed.build_id, packed.rows
    deleted = db.execute(
        select(Build.deleted_on).where(Build.id == build_id).with_for_update()
    ).first()
    job = db.get(ArtifactJob, build_id, with_for_update=True)
    mine = job is not None and job.status == ArtifactStatus.PACKING and job.worker_id == worker_id
    if deleted is None or deleted[0] is not None or job is None or not mine:
        db.rollback()
        return False
    if not packed.hold(db, blobs):
        db.rollback()
        return None
    kinds = [kind for kind, _, _ in rows]
    db.execute(
        delete(BuildArtifact).where(
            BuildArtifact.build_id == build_id, BuildArtifact.artifact_type.in_(kinds)
        )
    )
    for kind, digest, size in rows:
        db.add(
            BuildArtifact(
                build_id=build_id, artifact_type=kind, key=digest, size=size, sha256=digest
            )
        )
    job.status, job.info, job.ended_on, job.worker_id = (
        ArtifactStatus.COMPLETED,
        info,
        utcnow(),
        None,
    )
    db.commit()
    return True


@dataclass(frozen=True)
class PackedBlobs:
    """What a pack job links: fresh files (``staged``, every blob of them held and stored again
    if a collection removed it) or a donor build's blobs (``reused``: held, and all must still
    be there, the image's layers included)."""

    rows: list[tuple[str, str, int]]  # (artifact type, digest, size) to link
    staged: list[StagedBlob] = field(default_factory=list)
    reused: bool = False

    def hold(self, db: Session, blobs: BlobStore) -> bool:
        if not self.reused:
            hold_and_verify(db, blobs, self.staged)
            return True
        digests = {digest for _, digest, _ in self.rows}
        for kind, digest, _ in self.rows:
            if kind == "DOCKER_MANIFEST" and blobs.exists(digest):
                digests |= set(manifest_blobs(blobs.get_bytes(digest)))
        for digest in sorted(digests):  # the collector's order: no deadlock
            hold_blob(db, digest)
        return all(blobs.exists(digest) for digest in digests)


def fail_pack(db: Session, build_id: int, worker_id: str | None, info: str) -> None:
    """End the job FAILED with ``info``; the build itself stays COMPLETED."""
    # never over a COMPLETED job: the reaper (no worker id) may decide on a job whose
    # worker linked its artifacts just after the reaper looked
    query = update(ArtifactJob).where(
        ArtifactJob.build_id == build_id, ArtifactJob.status != ArtifactStatus.COMPLETED
    )
    if worker_id is not None:
        query = query.where(ArtifactJob.worker_id == worker_id)
    db.execute(
        query.values(
            status=ArtifactStatus.FAILED, info=info[:4000], ended_on=utcnow(), worker_id=None
        )
    )
    db.commit()


def requeue_pack_or_fail(
    db: Session, build_id: int, reason: str, max_attempts: int, *, counted: bool = True
) -> ArtifactStatus:
    """After a lost worker or a shutdown: queue the job again while attempts remain."""
    attempt = db.scalar(select(ArtifactJob.attempt).where(ArtifactJob.build_id == build_id)) or 0
    if not counted or attempt < max_attempts:
        db.execute(
            update(ArtifactJob)
            .where(ArtifactJob.build_id == build_id, ArtifactJob.status == ArtifactStatus.PACKING)
            .values(
                status=ArtifactStatus.QUEUED,
                worker_id=None,
                # None: the distributed mode's reaper sends it to a worker again
                dispatched_on=None,
                info=f"requeued: {reason}",
                attempt=ArtifactJob.attempt - (0 if counted else 1),
            )
        )
        db.commit()
        return ArtifactStatus.QUEUED
    fail_pack(db, build_id, None, f"{reason} (after {attempt} attempts)")
    return ArtifactStatus.FAILED


def packing_jobs(db: Session) -> list[tuple[int, str | None, datetime | None]]:
    """Every PACKING job: (build id, worker id, last heartbeat)."""
    rows = db.execute(
        select(ArtifactJob.build_id, ArtifactJob.worker_id, ArtifactJob.heartbeat_on).where(
            ArtifactJob.status == ArtifactStatus.PACKING
        )
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def artifact_state(db: Session, build_id: int) -> tuple[ArtifactStatus, str | None] | None:
    """The pack job's status and info, or None when the build has none."""
    row = db.execute(
        select(ArtifactJob.status, ArtifactJob.info).where(ArtifactJob.build_id == build_id)
    ).first()
    return (ArtifactStatus(row[0]), row[1]) if row is not None else None


def rebuild_artifacts(db: Session, settings: Settings, build_id: int) -> ArtifactStatus:
    """Queue the archive and image of a COMPLETED build again (after a failure, or for a build
    that has none); a job that is queued or running is left as it is."""
    build = get_build(db, build_id)
    if build.status != BuildStatus.COMPLETED:
        raise Conflict(
            f"build {build_id} is {build.status}; only a COMPLETED build has an archive and image"
        )
    env = db.get_one(Environment, build.environment_id)
    kinds = packed_artifacts(effective_build_artifacts(db, settings, env.namespace.name, env.name))
    if not kinds:
        raise InvalidInput("build_artifacts includes neither CONDA_PACK nor DOCKER_MANIFEST")
    job = db.get(ArtifactJob, build_id, with_for_update=True)
    if job is not None and job.status in (ArtifactStatus.QUEUED, ArtifactStatus.PACKING):
        return ArtifactStatus(job.status)
    if job is None:
        db.add(ArtifactJob(build_id=build_id, status=ArtifactStatus.QUEUED, kinds=kinds, attempt=0))
    else:
        job.status, job.kinds, job.attempt, job.info = ArtifactStatus.QUEUED, kinds, 0, None
        job.worker_id, job.ended_on, job.pack_key = None, None, None
        job.dispatched_on = None
    db.commit()
    return ArtifactStatus.QUEUED
