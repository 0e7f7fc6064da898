"""Use cases of the build workers: claim a build, stream its log, record its outcome.

Claiming is a conditional UPDATE (``WHERE status = 'QUEUED'``), so the same build delivered to
two workers is built once (W4). Publishing records packages and artifacts and switches the
current build in one transaction; the symlink follows the database, never leads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from envstore.core.builds import BuildStatus
from envstore.core.specs import EnvironmentSpec
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
from envstore.services.artifacts import StagedBlob, hold_and_verify
from envstore.services.packing import queue_artifacts
from envstore.services.settings import effective_policy
from envstore.storage.blobstore import BlobStore

__all__ = [
    "ClaimedBuild",
    "add_log_chunk",
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
    worker_id: str = ""
    # the environment's policy when the build starts (EffectivePolicy.to_json()): the build
    # process checks the solved set against it, and it chooses the artifacts
    policy: dict[str, Any] = field(default_factory=dict)


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
    """Move a QUEUED build to BUILDING for this worker; None if someone else has it.

    A queued build whose cancel was requested (left so by an older version) is CANCELED."""
    now = utcnow()
    db.execute(
        update(Build)
        .where(Build.id == build_id, _OPEN, Build.cancel_requested.is_(True))
        .values(_CANCELED | {"ended_on": now})
    )
    result = db.execute(
        update(Build)
        .where(
            Build.id == build_id,
            Build.status == BuildStatus.QUEUED,
            Build.cancel_requested.is_(False),
        )
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
    effective = build.effective_spec
    return ClaimedBuild(
        build.id,
        build.attempt,
        build.build_key,
        ns_name,
        env_name,
        _kind(effective) if effective is not None else spec.kind,
        effective if effective is not None else spec.spec,
        build.as_of,
        build.lockfile_text,
        worker_id,
        effective_policy(db, ns_name, env_name).to_json(),
    )


def _kind(spec: dict[str, Any]) -> str:
    """``conda`` or ``pypi``, for the effective spec (policy may have added conda packages)."""
    conda = tuple(dep for dep in spec.get("dependencies") or [] if isinstance(dep, str))
    return EnvironmentSpec(conda=conda).kind


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
    """Append ``text`` to the log as one chunk (no rewrite of earlier chunks, W10) and commit.

    Returns False once the log is full; the chunk that crosses the limit ends with a marker.
    """
    added = add_log_chunk(db, build_id, text, max_bytes)
    db.commit()
    return added


# Built once and run on the session's connection: a build writes its log several times, and
# the ORM's update (which synchronises loaded objects) and a new statement's cache key cost
# more than the statements themselves.
_LOG_SIZE = select(Build.log_size).where(Build.id == bindparam("build_id"))
_ADD_CHUNK = insert(BuildLogChunk)
_SET_LOG_SIZE = (
    update(Build).where(Build.id == bindparam("build_id")).values(log_size=bindparam("new_size"))
)


def add_log_chunk(db: Session, build_id: int, text: str, max_bytes: int) -> bool:
    """:func:`append_log` inside the caller's transaction (the publish writes a build's last
    log lines with its outcome: one transaction fewer between the build and COMPLETED)."""
    connection = db.connection()
    size = connection.execute(_LOG_SIZE, {"build_id": build_id}).scalar() or 0
    if size >= max_bytes:
        return False
    data = text.encode()
    full = size + len(data) >= max_bytes
    if full:
        data = data[: max(0, max_bytes - size)] + TRUNCATION_MARKER.encode()
        text = data.decode(errors="ignore")
        data = text.encode()
    connection.execute(_ADD_CHUNK, {"build_id": build_id, "offset": size, "text": text})
    connection.execute(_SET_LOG_SIZE, {"build_id": build_id, "new_size": size + len(data)})
    return not full


def publish(
    db: Session,
    blobs: BlobStore,
    claimed: ClaimedBuild,
    result: BuildResult,
    prefix_key: str,
    artifacts: Sequence[str] = (),
    switch_link: Callable[[], None] | None = None,
    log_tail: tuple[str, int] = ("", 0),
) -> tuple[bool, bool]:
    """Record a successful build and make it current when it is the newest; queue the pack
    job of its archive and image when ``artifacts`` (its effective ``build_artifacts``) asks.

    ``switch_link`` points the environment's link at the build; it is called inside the
    transaction, with the environment's row locked, just before the commit: whoever sees the
    build COMPLETED finds the link already switched, and two builds of one environment switch
    it in the order of their commits. Returns (published, switched). Not published if the
    build was taken away from this worker meanwhile (requeued, or canceled: then it is CANCELED
    here), and nothing is recorded. A replay after a commit whose answer was lost (D1) finds
    the build already COMPLETED by this attempt and answers as the first call did.

    ``log_tail`` (text, max log bytes): the build's last log lines, written in the same
    transaction as its outcome, and not again by a replay."""
    build = db.get_one(Build, claimed.id)
    if build.status == BuildStatus.COMPLETED and build.worker_id == claimed.worker_id:
        current = db.scalar(select(Environment.current_build_id).where(
            Environment.id == build.environment_id))  # fmt: skip
        return True, current == build.id
    if log_tail[0]:
        add_log_chunk(db, claimed.id, *log_tail)
    if build.status != BuildStatus.BUILDING or build.worker_id != claimed.worker_id:
        return False, False
    if build.cancel_requested:  # the cancel came after the build process succeeded (W11)
        _end(db, claimed.id, claimed.worker_id, _CANCELED)
        return False, False
    lock_bytes, yaml_bytes = result.lockfile.encode(), result.pinned_yaml.encode()
    lock_digest, yaml_digest = _sha256(lock_bytes), _sha256(yaml_bytes)
    hold_and_verify(  # before the links: a racing garbage collection is ordered by these holds
        db,
        blobs,
        [StagedBlob(lock_digest, data=lock_bytes), StagedBlob(yaml_digest, data=yaml_bytes)],
    )
    _record_packages(db, claimed.id, result.packages)
    for kind, key, size, digest in (
        ("LOCKFILE", lock_digest, len(lock_bytes), lock_digest),
        ("YAML", yaml_digest, len(yaml_bytes), yaml_digest),
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
    # the environment's row only: Environment.namespace is joined eagerly, and a plain FOR
    # UPDATE would lock the namespace's row too (every publish of a namespace in a queue)
    env = db.get_one(
        Environment, build.environment_id, with_for_update={"of": Environment, "key_share": True}
    )
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
        if switch_link is not None:
            db.flush()  # the environment's row is now locked by this transaction
            switch_link()
    db.commit()
    return True, switched and env.deleted_on is None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        connection = db.connection()
        names = sorted({i.name for i in infos})
        known = {
            (row.manager, row.name, row.version, row.build, row.sha256): row.id
            for row in connection.execute(_KNOWN_PACKAGES, {"channel": channel.id, "names": names})
        }
        links = []
        for info in infos:
            package_id = known.get(_info_key(info)) or _new_package(db, channel, info).id
            links.append(
                {"build_id": build_id, "package_id": package_id, "requested": info.requested}
            )
        connection.execute(_LINK_PACKAGES, links)


# Columns, not ORM objects, for the packages a build links (most known from earlier builds),
# and one executemany for the links: loading and adding a few hundred objects cost more.
_KNOWN_PACKAGES = select(
    Package.id, Package.manager, Package.name, Package.version, Package.build, Package.sha256
).where(
    Package.channel_id == bindparam("channel"), Package.name.in_(bindparam("names", expanding=True))
)
_LINK_PACKAGES = insert(BuildPackage)


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


# Not finished yet; every move to a terminal state or back to the queue starts from here.
_OPEN = Build.status.in_((BuildStatus.QUEUED, BuildStatus.BUILDING))
_CANCELED = {
    "status": BuildStatus.CANCELED,
    "status_info": "canceled: by request",
    "worker_id": None,
}


def _end(db: Session, build_id: int, worker_id: str | None, values: dict[str, Any]) -> bool:
    """Move an unfinished build (held by ``worker_id``, when given) to ``values``; False if it
    was no longer that worker's unfinished build. A build never leaves a terminal state."""
    query = update(Build).where(Build.id == build_id, _OPEN)
    if worker_id is not None:
        query = query.where(Build.worker_id == worker_id)
    if values["status"] in (BuildStatus.FAILED, BuildStatus.CANCELED):
        values = values | {"ended_on": utcnow()}
    done = db.execute(query.values(values)).rowcount == 1
    db.commit()
    return done


def finish_failed(
    db: Session, build_id: int, status: BuildStatus, info: str, worker_id: str | None = None
) -> bool:
    """End an unfinished build as FAILED or CANCELED; a requested cancel wins over a failure."""
    canceled = db.scalar(select(Build.cancel_requested).where(Build.id == build_id))
    if canceled:
        return _end(db, build_id, worker_id, _CANCELED)
    values = {"status": status, "status_info": info[:4000], "worker_id": None}
    return _end(db, build_id, worker_id, values)


def requeue_or_fail(
    db: Session, build_id: int, reason: str, max_attempts: int, worker_id: str | None = None
) -> BuildStatus:
    """After a lost or crashed attempt: queue again while attempts remain, else FAILED. A build
    whose cancel was requested is CANCELED instead: a canceled build is never requeued (W11).
    Returns the build's status afterwards (unchanged if it had already ended)."""
    attempt, canceled = db.execute(
        select(Build.attempt, Build.cancel_requested).where(Build.id == build_id)
    ).one()
    if canceled:
        _end(db, build_id, worker_id, _CANCELED)
    elif attempt < max_attempts:
        # dispatched_on None: the distributed mode's reaper sends it to a worker again
        requeue = {"status": BuildStatus.QUEUED, "worker_id": None, "dispatched_on": None}
        _end(db, build_id, worker_id, requeue | {"status_info": f"requeued: {reason}"})
    else:
        info = f"{reason} (after {attempt} attempts)"
        finish_failed(db, build_id, BuildStatus.FAILED, info, worker_id)
    return BuildStatus(str(db.scalar(select(Build.status).where(Build.id == build_id))))


def requeue_interrupted(db: Session, build_id: int, worker_id: str | None = None) -> None:
    """Queue again a build interrupted by a shutdown; the interrupted attempt does not count.
    A build whose cancel was requested is CANCELED instead."""
    if db.scalar(select(Build.cancel_requested).where(Build.id == build_id)):
        _end(db, build_id, worker_id, _CANCELED)
        return
    _end(
        db,
        build_id,
        worker_id,
        {
            "status": BuildStatus.QUEUED,
            "worker_id": None,
            "dispatched_on": None,
            "attempt": Build.attempt - 1,
            "status_info": "requeued: interrupted by a server shutdown",
        },
    )


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
