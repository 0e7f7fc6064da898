"""Use cases of the distributed mode's dispatcher and reaper (``jobs/distributed.py``).

The build row is the truth; the broker only carries wake-ups. ``dispatched_on`` records when a
build was last handed to the broker, so the reaper can tell a build that was never sent (the
broker was down, or the process died between commit and send) from one waiting in the queue.
Pack jobs (``artifact_job``, the archive and image made after a build) carry the same column
and are reaped the same way: sent again when unsent, queued again when their worker is lost.

Every sender (the API after a commit, a worker after a publish or a failed attempt, the leader
reaper) first claims the send with a conditional update of ``dispatched_on`` and sends only
what it claimed, so two senders never both send the same job; a failed send gives its claim
back (``release_*``) and the reaper sends the job on its next pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from envstore.core.builds import ArtifactStatus, BuildStatus
from envstore.db.models import ArtifactJob, Build, BuildLogChunk, Environment, Namespace

__all__ = [
    "StaleBuild",
    "StalePack",
    "build_state",
    "claim_pack_send",
    "claim_send",
    "claim_unsent",
    "claim_unsent_packs",
    "counts_by_status",
    "release_pack_sends",
    "release_sends",
    "stage_seconds",
    "stale_building",
    "stale_packing",
]


@dataclass(frozen=True)
class StaleBuild:
    id: int
    build_key: str
    namespace: str
    worker_id: str | None
    attempt: int
    cancel_requested: bool


def _waiting_build() -> ColumnElement[bool]:
    return and_(Build.status == BuildStatus.QUEUED, Build.deleted_on.is_(None))


def _waiting_pack() -> ColumnElement[bool]:
    return ArtifactJob.status == ArtifactStatus.QUEUED


@dataclass(frozen=True)
class _Sendable:
    """A kind of job the broker carries: its table, the key a message names, its
    ``dispatched_on`` column and what makes it wait for a send."""

    model: type[Build] | type[ArtifactJob]
    key: InstrumentedAttribute[int]
    sent: InstrumentedAttribute[datetime | None]
    waiting: Callable[[], ColumnElement[bool]]


_BUILDS = _Sendable(Build, Build.id, Build.dispatched_on, _waiting_build)
_PACKS = _Sendable(ArtifactJob, ArtifactJob.build_id, ArtifactJob.dispatched_on, _waiting_pack)


def _claim_one(db: Session, kind: _Sendable, key: int, when: datetime) -> bool:
    claimed = db.execute(
        update(kind.model)
        .where(kind.key == key, kind.waiting(), kind.sent.is_(None))
        .values({kind.sent: when})
    )
    db.commit()
    return bool(claimed.rowcount == 1)


def _claim_unsent(
    db: Session, kind: _Sendable, sent_before: datetime, when: datetime, limit: int
) -> list[int]:
    unsent = kind.waiting() & (kind.sent.is_(None) | (kind.sent < sent_before))
    oldest = select(kind.key).where(unsent).order_by(kind.key).limit(limit)
    # the condition again: a row another sender claimed meanwhile is re-checked, and skipped
    claimed = db.scalars(
        update(kind.model)
        .where(kind.key.in_(oldest), unsent)
        .values({kind.sent: when})
        .returning(kind.key)
    ).all()
    db.commit()
    return sorted(claimed)


def _release(db: Session, kind: _Sendable, keys: list[int], when: datetime) -> None:
    db.execute(
        update(kind.model).where(kind.key.in_(keys), kind.sent == when).values({kind.sent: None})
    )
    db.commit()


def claim_send(db: Session, build_id: int, when: datetime) -> bool:
    """Take the send of a QUEUED build not yet handed to the broker, recording ``when`` (the
    send time, or the end of its countdown); False when another sender has it, or it was
    canceled meanwhile. Committed before the caller sends."""
    return _claim_one(db, _BUILDS, build_id, when)


def claim_unsent(db: Session, sent_before: datetime, when: datetime, limit: int = 500) -> list[int]:
    """Take the send of QUEUED builds never handed to the broker, or handed before
    ``sent_before`` (their message is taken as lost), oldest first (the reaper)."""
    return _claim_unsent(db, _BUILDS, sent_before, when, limit)


def release_sends(db: Session, build_ids: list[int], when: datetime) -> None:
    """Give back the claims taken at ``when`` whose send failed: the reaper sends them again."""
    _release(db, _BUILDS, build_ids, when)


def stale_building(db: Session, beat_before: datetime) -> list[StaleBuild]:
    """BUILDING builds whose heartbeat stopped before ``beat_before``: their worker is gone."""
    rows = db.execute(
        select(
            Build.id,
            Build.build_key,
            Namespace.name,
            Build.worker_id,
            Build.attempt,
            Build.cancel_requested,
        )
        .join(Environment, Environment.id == Build.environment_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .where(
            Build.status == BuildStatus.BUILDING,
            (Build.heartbeat_on.is_(None)) | (Build.heartbeat_on < beat_before),
        )
    ).all()
    return [StaleBuild(r[0], r[1] or "", r[2], r[3], r[4], bool(r[5])) for r in rows]


@dataclass(frozen=True)
class StalePack:
    build_id: int
    worker_id: str | None
    attempt: int


def claim_pack_send(db: Session, build_id: int, when: datetime) -> bool:
    """Take the send of a QUEUED pack job not yet handed to the broker (see :func:`claim_send`)."""
    return _claim_one(db, _PACKS, build_id, when)


def claim_unsent_packs(
    db: Session, sent_before: datetime, when: datetime, limit: int = 500
) -> list[int]:
    """Take the send of QUEUED pack jobs (by build id) never handed to the broker, or handed
    before ``sent_before``, oldest first (see :func:`claim_unsent`)."""
    return _claim_unsent(db, _PACKS, sent_before, when, limit)


def release_pack_sends(db: Session, build_ids: list[int], when: datetime) -> None:
    """Give back the pack-job claims taken at ``when`` whose send failed."""
    _release(db, _PACKS, build_ids, when)


def stale_packing(db: Session, beat_before: datetime) -> list[StalePack]:
    """PACKING jobs whose heartbeat stopped before ``beat_before``: their worker is gone."""
    rows = db.execute(
        select(ArtifactJob.build_id, ArtifactJob.worker_id, ArtifactJob.attempt).where(
            ArtifactJob.status == ArtifactStatus.PACKING,
            (ArtifactJob.heartbeat_on.is_(None)) | (ArtifactJob.heartbeat_on < beat_before),
        )
    ).all()
    return [StalePack(r[0], r[1], r[2]) for r in rows]


def build_state(db: Session, build_id: int) -> tuple[str, int] | None:
    """(status, attempt) of a build, None when it does not exist."""
    row = db.execute(select(Build.status, Build.attempt).where(Build.id == build_id)).one_or_none()
    return None if row is None else (str(row[0]), int(row[1]))


def counts_by_status(db: Session) -> dict[str, int]:
    """Live (not deleted) builds per status, for the metrics."""
    rows = db.execute(
        select(Build.status, func.count()).where(Build.deleted_on.is_(None)).group_by(Build.status)
    ).all()
    return {str(status): int(count) for status, count in rows}


# the runner frames each stage in the log: "== solve done in 1.23s" (pipeline.runner.stage)
_STAGE_END = re.compile(r"^== (\w+) (?:done|failed) in ([0-9.]+)s$", re.MULTILINE)


def stage_seconds(db: Session, build_id: int) -> dict[str, float]:
    """How long each stage of the build's last attempt took, from its log."""
    chunks = db.scalars(
        select(BuildLogChunk.text)
        .where(BuildLogChunk.build_id == build_id, BuildLogChunk.text.like("%== % in %s%"))
        .order_by(BuildLogChunk.offset)
    )
    found: dict[str, float] = {}
    for chunk in chunks:
        for name, seconds in _STAGE_END.findall(chunk):
            found[name] = float(seconds)  # a later attempt's figure replaces an earlier one
    return found
