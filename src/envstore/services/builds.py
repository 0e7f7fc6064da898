"""Reading and managing builds: list, show, cancel, delete, logs, packages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.builds import TERMINAL, BuildStatus
from envstore.core.permissions import Permission
from envstore.db.models import (
    Build,
    BuildLogChunk,
    BuildPackage,
    Channel,
    Environment,
    Namespace,
    Package,
    utcnow,
)
from envstore.errors import Conflict, InvalidInput, NotFound
from envstore.services.access import visible
from envstore.services.audit import record
from envstore.services.common import Page, Paging, get_build, paginate_ids, where_build_matches
from envstore.services.views import (
    BuildView,
    PackageView,
    build_by_id,
    build_ids,
    builds_by_ids,
    packages_by_ids,
    rows,
)

__all__ = [
    "BuildFilters",
    "build_packages",
    "cancel_build",
    "delete_build",
    "list_builds",
    "load_build",
    "package_counts",
    "read_log",
]


@dataclass(frozen=True)
class BuildFilters:
    status: str | None = None
    environment_id: int | None = None
    namespace: str | None = None
    name: str | None = None
    packages: Sequence[str] = ()
    artifact: str | None = None


_LIVE_BUILD = select(Build.id).where(Build.id == bindparam("build_id"), Build.deleted_on.is_(None))


def load_build(db: Session, build_id: int) -> BuildView:
    """A build with its specification, artifacts and environment's names (two queries)."""
    build = build_by_id(db, build_id)
    if build is None:
        raise NotFound(f"build {build_id} not found")
    return build


def list_builds(
    db: Session, filters: BuildFilters, paging: Paging, who: Principal
) -> Page[BuildView]:
    """The builds ``who`` may read, filtered in SQL (four queries whatever the page size)."""
    query = build_ids().where(
        Build.deleted_on.is_(None),
        visible(db, who, Permission.ENV_READ, Namespace.name, Environment.name),
    )
    query = where_build_matches(
        query, status=filters.status, artifact=filters.artifact, packages=filters.packages
    )
    if filters.environment_id is not None:
        query = query.where(Build.environment_id == filters.environment_id)
    if filters.namespace:
        query = query.where(Namespace.name == filters.namespace)
    if filters.name:
        query = query.where(Environment.name == filters.name)
    sortable = {
        "id": Build.id,
        "scheduled_on": Build.scheduled_on,
        "status": Build.status,
        "name": Environment.name,
    }
    page = paginate_ids(db, query, paging, sortable, Build.id)
    return Page(builds_by_ids(db, page.items), page.page, page.size, page.count)


def _record(db: Session, who: Principal, kind: str, build: Build, before: object) -> None:
    namespace, environment = db.execute(
        select(Namespace.name, Environment.name)
        .join(Environment, Environment.namespace_id == Namespace.id)
        .where(Environment.id == build.environment_id)
    ).one()
    record(
        db, who, kind, namespace=namespace, environment=environment, target=f"build {build.id}",
        before=before,
    )  # fmt: skip


def cancel_build(db: Session, who: Principal, build_id: int) -> Build:
    """Cancel a queued build at once; ask the worker to kill a running one (W8).

    Both are conditional updates, so a cancel racing a claim or the end of the build either
    lands on the build's current state or is a Conflict, never lost (W11). The audit record is
    written in the same transaction, so a refused cancel leaves none."""
    build = get_build(db, build_id)
    _record(db, who, "build.cancel", build, before={"status": build.status})
    now = utcnow()
    queued = db.execute(
        update(Build)
        .where(Build.id == build_id, Build.status == BuildStatus.QUEUED)
        .values(status=BuildStatus.CANCELED, ended_on=now, status_info="canceled: by request")
    )
    if queued.rowcount != 1:
        building = db.execute(
            update(Build)
            .where(Build.id == build_id, Build.status == BuildStatus.BUILDING)
            .values(cancel_requested=True)
        )
        if building.rowcount != 1:
            db.rollback()
            db.refresh(build)
            raise Conflict(
                f"build {build_id} is {build.status}; only QUEUED or BUILDING builds can be "
                "canceled"
            )
    db.commit()
    db.refresh(build)
    return build


def delete_build(db: Session, who: Principal, build_id: int) -> Build:
    """Soft-delete a finished build that is not its environment's current build."""
    build = get_build(db, build_id)
    if build.status not in TERMINAL:
        raise Conflict(f"build {build_id} is {build.status}; cancel it before deleting it")
    current = db.scalar(
        select(Environment.current_build_id).where(Environment.id == build.environment_id)
    )
    if current == build.id:
        raise Conflict(f"build {build_id} is the current build of its environment; roll back first")
    build.deleted_on = utcnow()
    _record(db, who, "build.delete", build, before={"status": build.status})
    db.execute(delete(BuildLogChunk).where(BuildLogChunk.build_id == build_id))
    db.commit()
    return build


def read_log(db: Session, build_id: int, offset: int = 0) -> tuple[str, int]:
    """The log text from byte ``offset`` on, and the offset to ask for next."""
    if offset < 0:
        raise InvalidInput("offset must be 0 or more")
    get_build(db, build_id)
    chunks = db.execute(
        select(BuildLogChunk.offset, BuildLogChunk.text)
        .where(BuildLogChunk.build_id == build_id)
        .where(or_(BuildLogChunk.offset >= offset, _chunk_contains(offset)))
        .order_by(BuildLogChunk.offset)
    ).all()
    parts: list[bytes] = []
    end = offset
    for start, text in chunks:
        data = text.encode()
        parts.append(data[max(0, offset - start) :])
        end = start + len(data)
    return b"".join(parts).decode(errors="replace"), max(end, offset)


def _chunk_contains(offset: int) -> ColumnElement[bool]:
    # A chunk that starts before the offset may still hold part of what was asked for.
    latest = (
        select(func.max(BuildLogChunk.offset))
        .where(BuildLogChunk.offset < offset)
        .scalar_subquery()
    )
    return and_(BuildLogChunk.offset < offset, BuildLogChunk.offset == latest)


def build_packages(
    db: Session,
    build_id: int,
    paging: Paging,
    *,
    search: str | None = None,
    exact: bool = False,
    build: str | None = None,
) -> Page[tuple[PackageView, bool]]:
    if not rows(db, _LIVE_BUILD, build_id=build_id):
        raise NotFound(f"build {build_id} not found")
    query = (
        select(Package.id, BuildPackage.requested)
        .select_from(Package)
        .join(BuildPackage, BuildPackage.package_id == Package.id)
        .join(Channel, Channel.id == Package.channel_id)
        .where(BuildPackage.build_id == build_id)
    )
    if search:
        query = query.where(Package.name == search if exact else Package.name.contains(search))
    if build:
        query = query.where(Package.build.contains(build))
    sortable = {"name": Package.name, "version": Package.version, "id": Package.id}
    count = rows(db, select(func.count()).select_from(query.subquery()))[0][0]
    columns = [sortable[k] for k in paging.sort_by if k in sortable] or [Package.name]
    if any(k not in sortable for k in paging.sort_by):
        raise InvalidInput(
            f"cannot sort packages by {paging.sort_by}; choose from name, version, id"
        )
    ordered = [c.desc() if paging.order == "desc" else c.asc() for c in columns]
    found = rows(
        db, query.order_by(*ordered).offset((paging.page - 1) * paging.size).limit(paging.size)
    )
    views = packages_by_ids(db, [package_id for package_id, _ in found])
    items = [(view, bool(requested)) for view, (_, requested) in zip(views, found, strict=True)]
    return Page(items, paging.page, paging.size, count)


_PACKAGE_COUNTS = (
    select(BuildPackage.build_id, func.count())
    .where(BuildPackage.build_id.in_(bindparam("ids", expanding=True)))
    .group_by(BuildPackage.build_id)
)


def package_counts(db: Session, build_ids: Sequence[int]) -> dict[int, int]:
    """How many packages each of ``build_ids`` installed (one grouped query for a page)."""
    if not build_ids:
        return {}
    found = rows(db, _PACKAGE_COUNTS, ids=list(build_ids))
    return {int(build_id): int(count) for build_id, count in found}
