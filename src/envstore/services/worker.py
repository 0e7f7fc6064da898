"""Use cases of the build workers: claim a build, stream its log, record its outcome.

Claiming is a conditional UPDATE (``WHERE status = 'QUEUED'``), so the same build delivered to
two workers is built once (W4). Publishing records packages and artifacts and switches the
current build in one transaction; the symlink follows the database, never leads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envstore.core.builds import BuildStatus
from envstore.db.models import (
    Build,
    BuildArtifact,
    BuildLogChunk,
    BuildPackage,
    Channel,
    CurrentBuildSwitch,
    Environment,
    Namespace,
    Package,
    Specification,
    utcnow,
)
from envstore.pipeline.contract import BuildResult, PackageInfo
from envstore.services.packing import queue_artifacts
from envstore.storage.blobstore import BlobStore

__all__ = [
    "ClaimedBuild",
    "append_log",
    "building_builds",
    "claim",
    "count_building",
    "finish_failed",
    "heartbeat",
    "next_queued",
    "publish",
    "requeue_interrupted",
    "requeue_or_fail",
]

R = TypeVar("R")

TRUNCATION_MARKER = (
    "\n[envstore] log truncated: the build log reached its size limit (max_log_bytes)\n"
)


@dataclass(frozen=True)
class ClaimedBuild:
    id: int
    attempt: int
    build_key: str
    namespace: str
    environment: str
    kind: str
    spec: dict[str, Any]
    as_of: datetime | None
    lockfile_text: str | None


def next_queued(db: Session, limit: int = 10) -> list[int]:
    return list(
        db.scalars(
            select(Build.id)
            .where(Build.status == BuildStatus.QUEUED, Build.deleted_on.is_(None))
            .order_by(Build.id)
            .limit(limit)
        )
    )


def claim(db: Session, build_id: int, worker_id: str) -> ClaimedBuild | None:
    """Move a QUEUED build to BUILDING for this worker; None if someone else has it."""
    now = utcnow()
    result = db.execute(
        update(Build)
        .where(Build.id == build_id, Build.status == BuildStatus.QUEUED)
        .values(
            status=BuildStatus.BUILDING,
            worker_id=worker_id,
            attempt=Build.attempt + 1,
            started_on=now,
            heartbeat_on=now,
            status_info=None,
        )
    )
    db.commit()
    if result.rowcount != 1:
        return None
    row = db.execute(
        select(Build, Environment.name, Namespace.name, Specification)
        .join(Environment, Environment.id == Build.environment_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .join(Specification, Specification.id == Build.specification_id)
        .where(Build.id == build_id)
    ).one()
    build, env_name, ns_name, spec = row
    assert build.build_key is not None
    return ClaimedBuild(
        build.id,
        build.attempt,
        build.build_key,
        ns_name,
        env_name,
        spec.kind,
        spec.spec,
        build.as_of,
        build.lockfile_text,
    )


def heartbeat(db: Session, build_id: int, worker_id: str) -> bool:
    """Refresh the heartbeat; return True if a cancel was requested (or the build was taken)."""
    db.execute(
        update(Build)
        .where(Build.id == build_id, Build.worker_id == worker_id)
        .values(heartbeat_on=utcnow())
    )
    db.commit()
    state = db.execute(
        select(Build.cancel_requested, Build.status, Build.worker_id).where(Build.id == build_id)
    ).one()
    return bool(state[0]) or state[1] != BuildStatus.BUILDING or state[2] != worker_id


def append_log(db: Session, build_id: int, text: str, max_bytes: int) -> bool:
    """Append ``text`` to the log as one chunk (no rewrite of earlier chunks, W10).

    Returns False once the log is full; the chunk that crosses the limit ends with a marker.
    """
    size = db.scalar(select(Build.log_size).where(Build.id == build_id)) or 0
    if size >= max_bytes:
        return False
    data = text.encode()
    full = size + len(data) >= max_bytes
    if full:
        data = data[: max(0, max_bytes - size)] + TRUNCATION_MARKER.encode()
        text = data.decode(errors="ignore")
        data = text.encode()
    db.add(BuildLogChunk(build_id=build_id, offset=size, text=text))
    db.execute(update(Build).where(Build.id == build_id).values(log_size=size + len(data)))
    db.commit()
    return not full


def publish(
    db: Session,
    blobs: BlobStore,
    claimed: ClaimedBuild,
    result: BuildResult,
    prefix_key: str,
    artifacts: Sequence[str] = (),
) -> tuple[bool, bool]:
    """Record a successful build and make it current when it is the newest; queue the pack
    job of its archive and image when ``artifacts`` (its effective ``build_artifacts``) asks.

    Returns (published, switched). Not published if the build was taken away from this worker
    meanwhile (canceled or requeued), in which case nothing is recorded."""
    build = db.get_one(Build, claimed.id)
    if build.status != BuildStatus.BUILDING or build.cancel_requested:
        return False, False
    lock_digest = blobs.put_bytes(result.lockfile.encode())
    yaml_digest = blobs.put_bytes(result.pinned_yaml.encode())
    _record_packages(db, claimed.id, result.packages)
    for kind, key, size, digest in (
        ("LOCKFILE", lock_digest, len(result.lockfile.encode()), lock_digest),
        ("YAML", yaml_digest, len(result.pinned_yaml.encode()), yaml_digest),
        ("LOGS", f"log:{claimed.id}", 0, None),
        ("DIRECTORY", prefix_key, result.size, None),
    ):
        db.add(
            BuildArtifact(
                build_id=claimed.id, artifact_type=kind, key=key, size=size, sha256=digest
            )
        )
    queue_artifacts(db, claimed.id, artifacts)
    now = utcnow()
    build.status = BuildStatus.COMPLETED
    build.status_info = None
    build.size = result.size
    build.python_version = result.python_version
    build.ended_on = now
    env = db.get_one(Environment, build.environment_id)
    switched = env.current_build_id is None or env.current_build_id < build.id
    if switched and env.deleted_on is None:
        db.add(
            CurrentBuildSwitch(
                environment_id=env.id,
                from_build_id=env.current_build_id,
                to_build_id=build.id,
                switched_by="envstore",
                switched_on=now,
            )
        )
        env.current_build_id = build.id
    db.commit()
    # A garbage collection racing this publish may have swept the blobs between their upload
    # and the commit that links them; storing again is idempotent and closes that window (D6).
    blobs.put_bytes(result.lockfile.encode())
    blobs.put_bytes(result.pinned_yaml.encode())
    return True, switched and env.deleted_on is None


def _record_packages(db: Session, build_id: int, packages: list[PackageInfo]) -> None:
    """Link the build to its package rows, creating channel and package rows that are new.

    Existing rows are read in one query per channel (a build has hundreds of packages, most
    known from earlier builds). Two workers may publish builds with the same new packages at
    once: each insert runs in a savepoint, and losing the race means reading the winner's row.
    """
    now = utcnow()
    by_channel: dict[str, list[PackageInfo]] = {}
    for info in packages:
        by_channel.setdefault(info.channel, []).append(info)
    for channel_name, infos in by_channel.items():
        channel = _get_or_create(
            db,
            select(Channel).where(Channel.name == channel_name),
            Channel(name=channel_name, last_update=now),
        )
        known = {
            _package_key(p): p
            for p in db.scalars(
                select(Package).where(
                    Package.channel_id == channel.id, Package.name.in_({i.name for i in infos})
                )
            )
        }
        for info in infos:
            package = known.get(_info_key(info)) or _new_package(db, channel, info)
            db.add(BuildPackage(build_id=build_id, package_id=package.id, requested=info.requested))


def _package_key(p: Package) -> tuple[str, str, str, str, str]:
    return (p.manager, p.name, p.version, p.build, p.sha256)


def _info_key(info: PackageInfo) -> tuple[str, str, str, str, str]:
    return (info.manager, info.name, info.version, info.build, info.sha256)


def _new_package(db: Session, channel: Channel, info: PackageInfo) -> Package:
    lookup = select(Package).where(
        Package.channel_id == channel.id,
        Package.manager == info.manager,
        Package.name == info.name,
        Package.version == info.version,
        Package.build == info.build,
        Package.sha256 == info.sha256,
    )
    new = Package(
        channel_id=channel.id,
        manager=info.manager,
        name=info.name,
        version=info.version,
        build=info.build,
        sha256=info.sha256,
        md5=info.md5,
        url=info.url,
        license=info.license,
        summary=info.summary,
        size=info.size,
    )
    return _get_or_create(db, lookup, new)


def _get_or_create(db: Session, lookup: Select[tuple[R]], new: R) -> R:
    """The row ``lookup`` finds, else ``new`` inserted (or the row a concurrent insert won with)."""
    found = db.scalar(lookup)
    if found is not None:
        return found
    try:
        with db.begin_nested():
            db.add(new)
        return new
    except IntegrityError:
        found = db.scalar(lookup)
        assert found is not None
        return found


def finish_failed(db: Session, build_id: int, status: BuildStatus, info: str) -> None:
    db.execute(
        update(Build)
        .where(Build.id == build_id)
        .values(status=status, status_info=info[:4000], ended_on=utcnow(), worker_id=None)
    )
    db.commit()


def requeue_or_fail(db: Session, build_id: int, reason: str, max_attempts: int) -> BuildStatus:
    """After a lost or crashed attempt: queue again while attempts remain, else FAILED."""
    attempt = db.scalar(select(Build.attempt).where(Build.id == build_id)) or 0
    if attempt < max_attempts:
        db.execute(
            update(Build)
            .where(Build.id == build_id, Build.status == BuildStatus.BUILDING)
            .values(status=BuildStatus.QUEUED, worker_id=None, status_info=f"requeued: {reason}")
        )
        db.commit()
        return BuildStatus.QUEUED
    finish_failed(db, build_id, BuildStatus.FAILED, f"{reason} (after {attempt} attempts)")
    return BuildStatus.FAILED


def requeue_interrupted(db: Session, build_id: int) -> None:
    """Queue again a build interrupted by a shutdown; the interrupted attempt does not count."""
    db.execute(
        update(Build)
        .where(Build.id == build_id, Build.status == BuildStatus.BUILDING)
        .values(
            status=BuildStatus.QUEUED,
            worker_id=None,
            attempt=Build.attempt - 1,
            status_info="requeued: interrupted by a server shutdown",
        )
    )
    db.commit()


def building_builds(db: Session) -> list[tuple[int, str, str, str | None, datetime | None]]:
    """Every BUILDING build: (id, build key, namespace, worker id, last heartbeat)."""
    rows = db.execute(
        select(Build.id, Build.build_key, Namespace.name, Build.worker_id, Build.heartbeat_on)
        .join(Environment, Environment.id == Build.environment_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .where(Build.status == BuildStatus.BUILDING)
    ).all()
    return [(r[0], r[1] or "", r[2], r[3], r[4]) for r in rows]


def count_building(db: Session) -> int:
    return db.scalar(select(func.count()).where(Build.status == BuildStatus.BUILDING)) or 0
