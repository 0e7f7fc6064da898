"""Shared helpers of the services: paging, lookups that raise NotFound, time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from envstore.core.builds import BuildStatus
from envstore.core.names import validate_name
from envstore.db.models import Build, BuildArtifact, BuildPackage, Environment, Namespace, Package
from envstore.errors import InvalidInput, NotFound

__all__ = [
    "MAX_PAGE_SIZE",
    "Page",
    "Paging",
    "get_build",
    "get_environment",
    "get_namespace",
    "paginate",
    "paginate_ids",
    "where_build_matches",
]

MAX_PAGE_SIZE = 100
T = TypeVar("T")


@dataclass(frozen=True)
class Paging:
    page: int = 1
    size: int = MAX_PAGE_SIZE
    sort_by: Sequence[str] = ()
    order: str = "asc"

    def __post_init__(self) -> None:
        if self.page < 1:
            raise InvalidInput("page must be 1 or more")
        if self.size < 1:
            raise InvalidInput("size must be 1 or more")
        if self.order not in ("asc", "desc"):
            raise InvalidInput("order must be 'asc' or 'desc'")
        object.__setattr__(self, "size", min(self.size, MAX_PAGE_SIZE))


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    size: int
    count: int


def paginate(
    db: Session, query: Select[Any], paging: Paging, sortable: dict[str, Any], default: Any
) -> Page[Any]:
    """Count, sort and slice ``query`` (of ORM entities) in two queries whatever the page size."""
    count = db.scalar(_count(query)) or 0
    found = db.scalars(_slice(query, paging, sortable, default))
    return Page(list(found.unique()), paging.page, paging.size, count)


def paginate_ids(
    db: Session, query: Select[tuple[int]], paging: Paging, sortable: dict[str, Any], default: Any
) -> Page[int]:
    """Count, sort and slice a select of ids in two queries; load the page by id after."""
    connection = db.connection()
    count = connection.execute(_count(query)).scalar() or 0
    ids = connection.execute(_slice(query, paging, sortable, default)).scalars().all()
    return Page(list(ids), paging.page, paging.size, count)


def _count(query: Select[Any]) -> Select[tuple[int]]:
    return select(func.count()).select_from(query.order_by(None).subquery())


def _slice(
    query: Select[Any], paging: Paging, sortable: dict[str, Any], default: Any
) -> Select[Any]:
    columns = []
    for key in paging.sort_by:
        if key not in sortable:
            raise InvalidInput(f"cannot sort by {key!r}; choose from {', '.join(sorted(sortable))}")
        columns.append(sortable[key])
    columns = columns or [default]
    ordered = [c.desc() if paging.order == "desc" else c.asc() for c in columns]
    return query.order_by(*ordered).offset((paging.page - 1) * paging.size).limit(paging.size)


def get_namespace(db: Session, name: str) -> Namespace:
    validate_name(name, kind="namespace")
    namespace = db.scalar(
        select(Namespace).where(Namespace.name == name, Namespace.deleted_on.is_(None))
    )
    if namespace is None:
        raise NotFound(f"namespace {name!r} not found")
    return namespace


def get_environment(db: Session, namespace: str, name: str) -> Environment:
    validate_name(namespace, kind="namespace")
    validate_name(name, kind="environment name")
    env = db.scalar(
        select(Environment)
        .join(Namespace)
        .where(
            Namespace.name == namespace,
            Environment.name == name,
            Environment.deleted_on.is_(None),
            Namespace.deleted_on.is_(None),
        )
    )
    if env is None:
        raise NotFound(f"environment {namespace}/{name} not found")
    return env


def get_build(db: Session, build_id: int) -> Build:
    build = db.scalar(select(Build).where(Build.id == build_id, Build.deleted_on.is_(None)))
    if build is None:
        raise NotFound(f"build {build_id} not found")
    return build


def where_build_matches(
    query: Select[Any], *, status: str | None, artifact: str | None, packages: Sequence[str]
) -> Select[Any]:
    """Filter a query that selects or joins ``Build``: by status, by an artifact it has, and by
    packages it contains (all of them; names compared without case)."""
    if status:
        try:
            query = query.where(Build.status == BuildStatus(status.upper()))
        except ValueError:
            raise InvalidInput(f"unknown build status {status!r}") from None
    if artifact:
        query = query.where(
            Build.id.in_(
                select(BuildArtifact.build_id).where(BuildArtifact.artifact_type == artifact)
            )
        )
    for package in packages:
        query = query.where(
            Build.id.in_(
                select(BuildPackage.build_id)
                .join(Package, Package.id == BuildPackage.package_id)
                .where(func.lower(Package.name) == package.strip().lower())
            )
        )
    return query
