"""Retention and garbage collection (mark and sweep), safe while builds run (D6).

1. **Expire** builds by the retention settings: per environment keep the last ``keep_last``
   completed builds and/or those newer than ``keep_days``; failed and canceled builds are kept
   ``failed_days``. The current build of an environment and builds not yet finished are never
   expired; with no rule set nothing expires. An expired build is soft-deleted (its row stays
   for history), its artifact rows and log go, its prefix is removed.
2. **Mark** every blob a live build links (and the layers its image manifest names), every live
   build key and every conda package a live build uses.
3. **Sweep** what is not marked *and* older than the grace period: blobs, prefixes, package
   cache entries. A blob is deleted only in a transaction that holds its ``blob_hold`` row and
   has checked, after taking it, that no live build links it; publishers hold the same row
   while they check the blob is there and link it (services.artifacts.hold_and_verify). So a
   publish racing the sweep never ends with a dangling link, on any database and with any grace
   period (D6); the grace period only spares uploads that are about to be linked.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from envstore.core.builds import BuildStatus
from envstore.db.models import (
    BlobHold,
    Build,
    BuildArtifact,
    BuildLogChunk,
    BuildPackage,
    Environment,
    Namespace,
    Package,
    utcnow,
)
from envstore.errors import NotFound
from envstore.services.artifacts import hold_blob
from envstore.services.registry import manifest_blobs
from envstore.storage.blobstore import BlobStore
from envstore.storage.layout import StoreLayout

__all__ = ["GcReport", "Retention", "collect", "expired_builds"]

_FINISHED_FAILED = (BuildStatus.FAILED, BuildStatus.CANCELED)


@dataclass(frozen=True)
class Retention:
    keep_last: int | None = None
    keep_days: float | None = None
    failed_days: float | None = None
    grace_seconds: float = 3600.0


@dataclass
class GcReport:
    dry_run: bool
    builds: list[int] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    prefix_bytes: int = 0
    blobs: list[str] = field(default_factory=list)
    blob_bytes: int = 0
    package_cache: list[str] = field(default_factory=list)
    package_cache_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        total = self.prefix_bytes + self.blob_bytes + self.package_cache_bytes
        return (
            f"gc {verb} {total} bytes: {len(self.builds)} build(s) {self.builds}, "
            f"{len(self.prefixes)} prefix(es) ({self.prefix_bytes} bytes), "
            f"{len(self.blobs)} blob(s) ({self.blob_bytes} bytes), "
            f"{len(self.package_cache)} package cache entr(ies) "
            f"({self.package_cache_bytes} bytes)"
        )


def _keeps_completed(rank: int, ended: datetime | None, rules: Retention, now: datetime) -> bool:
    if rules.keep_last is None and rules.keep_days is None:
        return True
    if rules.keep_last is not None and rank < rules.keep_last:
        return True
    return (
        rules.keep_days is not None
        and ended is not None
        and (ended >= now - timedelta(days=rules.keep_days))
    )


def expired_builds(db: Session, rules: Retention, now: datetime) -> list[Build]:
    """Finished, live, non-current builds that no retention rule keeps."""
    current = {row for row in db.scalars(select(Environment.current_build_id)) if row is not None}
    builds = db.scalars(
        select(Build)
        .where(Build.deleted_on.is_(None))
        .order_by(Build.environment_id, Build.id.desc())
    ).all()
    expired, rank = [], dict[int, int]()
    for build in builds:
        if build.status == BuildStatus.COMPLETED:
            position = rank.get(build.environment_id, 0)
            rank[build.environment_id] = position + 1
            if build.id not in current and not _keeps_completed(
                position, build.ended_on, rules, now
            ):
                expired.append(build)
        elif build.status in _FINISHED_FAILED and build.id not in current:
            ended = build.ended_on or build.scheduled_on
            if rules.failed_days is not None and ended < now - timedelta(days=rules.failed_days):
                expired.append(build)
    return expired


def _tree_size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += Path(directory, name).lstat().st_size
            except FileNotFoundError:
                continue
    return total


def _namespace_of(db: Session, build: Build) -> str:
    return str(
        db.scalar(
            select(Namespace.name)
            .join(Environment, Environment.namespace_id == Namespace.id)
            .where(Environment.id == build.environment_id)
        )
    )


def _expire(db: Session, layout: StoreLayout, builds: list[Build], report: GcReport) -> None:
    for build in builds:
        report.builds.append(build.id)
        if build.build_key:
            namespace = _namespace_of(db, build)
            prefix = layout.existing_prefix(namespace, build.build_key)
            if prefix.is_dir():
                report.prefixes.append(str(prefix))
                report.prefix_bytes += _tree_size(prefix)
                if not report.dry_run:
                    layout.remove_prefix(namespace, build.build_key)
        if report.dry_run:
            continue
        # Conditional: a build switched to current meanwhile is not touched.
        done = db.execute(
            update(Build)
            .where(Build.id == build.id, Build.deleted_on.is_(None))
            .values(deleted_on=utcnow())
        )
        if done.rowcount:
            db.execute(delete(BuildArtifact).where(BuildArtifact.build_id == build.id))
            db.execute(delete(BuildLogChunk).where(BuildLogChunk.build_id == build.id))
    db.commit()


_SWEEP_BATCH = 200  # blobs held (and deleted) per transaction


class _Marker:
    """Which blobs live builds reference: artifact rows, and the layers and configs their image
    manifests name (manifests are content-addressed, so each is read once per collection)."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._layers: dict[str, set[str]] = {}

    def marked(self, db: Session, among: set[str] | None = None) -> set[str]:
        live = select(BuildArtifact.key).join(Build, Build.id == BuildArtifact.build_id)
        live = live.where(Build.deleted_on.is_(None))
        linked = live if among is None else live.where(BuildArtifact.key.in_(among))
        marked = {str(key) for key in db.scalars(linked) if len(str(key)) == 64}
        for manifest in db.scalars(live.where(BuildArtifact.artifact_type == "DOCKER_MANIFEST")):
            marked |= self._manifest_layers(str(manifest))
        return marked

    def _manifest_layers(self, digest: str) -> set[str]:
        if digest not in self._layers:
            try:
                self._layers[digest] = set(manifest_blobs(self.blobs.get_bytes(digest)))
            except NotFound:
                self._layers[digest] = set()
        return self._layers[digest]


def _sweep_blobs(db: Session, blobs: BlobStore, cutoff: datetime, report: GcReport) -> None:
    marker = _Marker(blobs)
    listed = list(blobs.list_blobs())  # listed before marking: a blob stored later is unseen
    marked = marker.marked(db)
    candidates = sorted(
        (info for info in listed if info.digest not in marked and info.modified < cutoff),
        key=lambda info: info.digest,  # the order publishers hold rows in: no deadlock
    )
    if report.dry_run:
        for info in candidates:
            report.blobs.append(info.digest)
            report.blob_bytes += info.size
        return
    for start in range(0, len(candidates), _SWEEP_BATCH):
        batch = candidates[start : start + _SWEEP_BATCH]
        db.commit()  # a new transaction whose first statement is a hold (see hold_blob)
        for info in batch:
            hold_blob(db, info.digest)
        # A publisher linking one of these held its row while doing so, so it has committed
        # by now, and these reads (after the holds) see its links.
        still = marker.marked(db, {info.digest for info in batch})
        for info in batch:
            if info.digest in still:
                continue
            blobs.delete(info.digest)  # before the commit that lets publishers hold it again
            db.execute(delete(BlobHold).where(BlobHold.digest == info.digest))
            report.blobs.append(info.digest)
            report.blob_bytes += info.size
        db.commit()


def _sweep_prefixes(db: Session, layout: StoreLayout, cutoff: float, report: GcReport) -> None:
    """Prefixes no live build owns: in ``builds/<ns>/``, and those an older store kept beside
    the links in ``envs/<ns>/`` (links themselves are symlinks and never swept)."""
    live = set(db.scalars(select(Build.build_key).where(Build.deleted_on.is_(None))))
    for tree in (layout.builds_dir, layout.envs_dir):
        if not tree.is_dir() or tree.is_symlink():
            continue
        for namespace in sorted(tree.iterdir()):
            if not namespace.is_dir() or namespace.is_symlink():
                continue
            for entry in sorted(namespace.iterdir()):
                if entry.is_symlink() or not entry.is_dir() or entry.name in live:
                    continue
                if entry.name.startswith(".") or entry.lstat().st_mtime >= cutoff:
                    continue
                if str(entry) in report.prefixes:
                    continue
                report.prefixes.append(str(entry))
                report.prefix_bytes += _tree_size(entry)
                if not report.dry_run:
                    shutil.rmtree(entry, ignore_errors=True)


def _sweep_package_cache(db: Session, pkgs_dir: Path, cutoff: float, report: GcReport) -> None:
    rows = db.execute(
        select(Package.name, Package.version, Package.build)
        .join(BuildPackage, BuildPackage.package_id == Package.id)
        .join(Build, Build.id == BuildPackage.build_id)
        .where(Build.deleted_on.is_(None), Package.manager == "conda")
    ).all()
    marked = {f"{name}-{version}-{build}" for name, version, build in rows}
    if not pkgs_dir.is_dir():
        return
    for entry in sorted(pkgs_dir.iterdir()):
        stem = entry.name
        for suffix in (".lock", ".conda", ".tar.bz2"):
            stem = stem.removesuffix(suffix)
        if stem.count("-") < 2 or stem.startswith(".") or stem in marked:
            continue
        if entry.lstat().st_mtime >= cutoff:
            continue
        report.package_cache.append(entry.name)
        report.package_cache_bytes += _tree_size(entry)
        if not report.dry_run:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def collect(
    db: Session,
    blobs: BlobStore,
    store_dir: Path,
    rules: Retention,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> GcReport:
    """Expire builds by ``rules``, then sweep what no live build references."""
    now = now or utcnow()
    report = GcReport(dry_run=dry_run)
    layout = StoreLayout(store_dir / "envs")
    _expire(db, layout, expired_builds(db, rules, now), report)
    cutoff = now - timedelta(seconds=rules.grace_seconds)
    cutoff_epoch = (cutoff - datetime(1970, 1, 1)).total_seconds()
    # In a dry run the expired builds still hold their blobs, so only their prefixes count.
    _sweep_blobs(db, blobs, cutoff, report)
    _sweep_prefixes(db, layout, cutoff_epoch, report)
    _sweep_package_cache(db, store_dir / "pkgs", cutoff_epoch, report)
    return report
