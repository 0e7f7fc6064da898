"""Read models: what the read routes show of builds, environments and packages, selected column
by column into named tuples.

The read routes (a page of 100 builds, one build, one environment) are the API's hot path.
Loading them as ORM objects cost about 0.15 ms of CPU per build (an instrumented object per row
and per related row, the identity map, one query per eager-loaded relation); these tuples are
filled straight from result rows, and the relations come back in the same row (joins) or in one
query per page (artifacts). Writes keep using the ORM; ``api/schemas`` turns these into JSON.

A list is paged in two steps: the service filters, sorts, counts and slices a narrow select of
ids (:func:`build_ids`, :func:`environment_ids`), then the page is loaded by id with a statement
built once, here. Building a wide select and hashing it for SQLAlchemy's compiled cache cost more
than running it (~0.5 ms for a page of builds), so wide statements are never built per request.
Each ``*_COLUMNS`` tuple lists the selected columns in the order of its tuple's fields (a unit
test pins that).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, Select, bindparam, func, select
from sqlalchemy.orm import Session

from envstore.db.models import (
    ArtifactJob,
    Build,
    BuildArtifact,
    Channel,
    Environment,
    Namespace,
    Package,
    Specification,
)

__all__ = [
    "ArtifactView",
    "BuildSummary",
    "BuildView",
    "ChannelView",
    "EnvironmentView",
    "PackageView",
    "SpecificationView",
    "build_by_id",
    "build_ids",
    "builds_by_ids",
    "environment_by_name",
    "environment_ids",
    "environments_by_ids",
    "newest_builds",
    "packages_by_ids",
    "rows",
]


class BuildSummary(NamedTuple):
    """A build's own columns: what a list of environments shows of each current build."""

    id: int
    environment_id: int
    status: str
    status_info: str | None
    size: int | None
    scheduled_on: datetime
    started_on: datetime | None
    ended_on: datetime | None
    build_key: str | None
    attempt: int
    as_of: datetime | None
    python_version: str | None
    submitted_by: str | None


class SpecificationView(NamedTuple):
    id: int
    name: str
    spec: dict[str, Any]
    sha256: str
    created_on: datetime
    kind: str


class ArtifactView(NamedTuple):
    id: int
    artifact_type: str
    key: str


class BuildView(NamedTuple):
    """A build with its environment's names, its specification and its artifacts."""

    id: int
    environment_id: int
    status: str
    status_info: str | None
    size: int | None
    scheduled_on: datetime
    started_on: datetime | None
    ended_on: datetime | None
    build_key: str | None
    attempt: int
    as_of: datetime | None
    python_version: str | None
    submitted_by: str | None
    namespace: str
    environment: str
    specification: SpecificationView
    artifacts: list[ArtifactView]
    artifacts_status: str | None  # the pack job's (archive, image): None when there is none
    artifacts_info: str | None
    effective_spec: dict[str, Any] | None = None  # the spec after policy (None: before policy)
    policy_additions: list[Any] | None = None


class EnvironmentView(NamedTuple):
    id: int
    name: str
    description: str | None
    current_build_id: int | None
    namespace_id: int
    namespace: str
    current_build: BuildSummary | None


class ChannelView(NamedTuple):
    id: int
    name: str
    last_update: datetime | None


class PackageView(NamedTuple):
    id: int
    channel: ChannelView
    license: str | None
    name: str
    version: str
    summary: str | None
    build: str
    manager: str
    sha256: str
    url: str
    size: int | None


_BUILD_SUMMARY_COLUMNS = (
    Build.id,
    Build.environment_id,
    Build.status,
    Build.status_info,
    Build.size,
    Build.scheduled_on,
    Build.started_on,
    Build.ended_on,
    Build.build_key,
    Build.attempt,
    Build.as_of,
    Build.python_version,
    Build.submitted_by,
)
_SPECIFICATION_COLUMNS = (
    Specification.id.label("specification_id"),
    Specification.name.label("specification_name"),
    Specification.spec,
    Specification.sha256,
    Specification.created_on,
    Specification.kind,
)
_NAMES = (Namespace.name.label("namespace"), Environment.name.label("environment"))
_POLICY_COLUMNS = (Build.effective_spec, Build.policy_additions)  # the last fields of BuildView
_PACK_COLUMNS = (
    ArtifactJob.status.label("artifacts_status"),
    ArtifactJob.info.label("artifacts_info"),
)
_CHANNEL_COLUMNS = (
    Channel.id.label("channel_id"),
    Channel.name.label("channel_name"),
    Channel.last_update,
)
_PACKAGE_COLUMNS = (
    Package.id,
    *_CHANNEL_COLUMNS,
    Package.license,
    Package.name,
    Package.version,
    Package.summary,
    Package.build,
    Package.manager,
    Package.sha256,
    Package.url,
    Package.size,
)
_ENVIRONMENT_COLUMNS = (
    Environment.id,
    Environment.name,
    Environment.description,
    Environment.current_build_id,
    Namespace.id.label("namespace_id"),
    Namespace.name.label("namespace"),
)
_SUMMARY = len(_BUILD_SUMMARY_COLUMNS)
_SPEC_AT = _SUMMARY + len(_NAMES)
_SPEC_END = _SPEC_AT + len(_SPECIFICATION_COLUMNS)
_ENV = len(_ENVIRONMENT_COLUMNS)
_CHANNEL_END = 1 + len(_CHANNEL_COLUMNS)


def rows(db: Session, statement: Select[Any], **params: Any) -> Sequence[Row[Any]]:
    """Run a Core select on the session's connection: ``Session.execute`` adds ORM work that a
    plain select of columns does not need (about 0.05 ms per statement)."""
    return db.connection().execute(statement, params).all()


def build_ids() -> Select[tuple[int]]:
    """Ids of builds joined to their environment and namespace: filter, sort and page this
    narrow select, then load the page with :func:`builds_by_ids`."""
    return (
        select(Build.id)
        .join(Environment, Environment.id == Build.environment_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
    )


def _builds() -> Select[Any]:
    return (
        select(
            *_BUILD_SUMMARY_COLUMNS,
            *_NAMES,
            *_SPECIFICATION_COLUMNS,
            *_PACK_COLUMNS,
            *_POLICY_COLUMNS,
        )
        .join(Environment, Environment.id == Build.environment_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .join(Specification, Specification.id == Build.specification_id)
        .outerjoin(ArtifactJob, ArtifactJob.build_id == Build.id)
    )


_BUILDS_BY_IDS = _builds().where(Build.id.in_(bindparam("ids", expanding=True)))
_BUILD_BY_ID = _builds().where(Build.id == bindparam("build_id"), Build.deleted_on.is_(None))
_ARTIFACTS = (
    select(BuildArtifact.build_id, BuildArtifact.id, BuildArtifact.artifact_type, BuildArtifact.key)
    .where(BuildArtifact.build_id.in_(bindparam("ids", expanding=True)))
    .order_by(BuildArtifact.id)
)


def builds_by_ids(db: Session, ids: Sequence[int]) -> list[BuildView]:
    """The builds of ``ids``, in that order (two queries)."""
    if not ids:
        return []
    order = {build_id: n for n, build_id in enumerate(ids)}
    found = sorted(rows(db, _BUILDS_BY_IDS, ids=list(ids)), key=lambda row: order[row[0]])
    return _build_views(db, found)


def build_by_id(db: Session, build_id: int) -> BuildView | None:
    """A live build (two queries), or None."""
    views = _build_views(db, rows(db, _BUILD_BY_ID, build_id=build_id))
    return views[0] if views else None


def _build_views(db: Session, found: Sequence[Row[Any]]) -> list[BuildView]:
    artifacts: dict[int, list[ArtifactView]] = {row[0]: [] for row in found}
    if artifacts:
        for build_id, *artifact in rows(db, _ARTIFACTS, ids=list(artifacts)):
            artifacts[build_id].append(ArtifactView._make(artifact))
    return [
        BuildView._make(
            (
                *row[:_SPEC_AT],
                SpecificationView._make(row[_SPEC_AT:_SPEC_END]),
                artifacts[row[0]],
                *row[_SPEC_END:],
            )
        )
        for row in found
    ]


def environment_ids() -> Select[tuple[int]]:
    """Ids of environments joined to their namespace and (outer) their current build: filter,
    sort and page this narrow select, then load the page with :func:`environments_by_ids`."""
    return (
        select(Environment.id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .outerjoin(Build, Build.id == Environment.current_build_id)
    )


def _environments() -> Select[Any]:
    return (
        select(*_ENVIRONMENT_COLUMNS, *_BUILD_SUMMARY_COLUMNS)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .outerjoin(Build, Build.id == Environment.current_build_id)
    )


_ENVIRONMENTS_BY_IDS = _environments().where(Environment.id.in_(bindparam("ids", expanding=True)))
_ENVIRONMENT_BY_NAME = _environments().where(
    Namespace.name == bindparam("namespace"),
    Environment.name == bindparam("name"),
    Environment.deleted_on.is_(None),
    Namespace.deleted_on.is_(None),
)


def environments_by_ids(db: Session, ids: Sequence[int]) -> list[EnvironmentView]:
    """The environments of ``ids``, in that order (one query)."""
    if not ids:
        return []
    order = {env_id: n for n, env_id in enumerate(ids)}
    found = rows(db, _ENVIRONMENTS_BY_IDS, ids=list(ids))
    return _environment_views(sorted(found, key=lambda row: order[row[0]]))


def environment_by_name(db: Session, namespace: str, name: str) -> EnvironmentView | None:
    """A live environment of a live namespace (one query), or None."""
    views = _environment_views(rows(db, _ENVIRONMENT_BY_NAME, namespace=namespace, name=name))
    return views[0] if views else None


def _environment_views(found: Sequence[Row[Any]]) -> list[EnvironmentView]:
    return [
        EnvironmentView._make(
            (*row[:_ENV], BuildSummary._make(row[_ENV:]) if row[_ENV] is not None else None)
        )
        for row in found
    ]


_PACKAGES_BY_IDS = (
    select(*_PACKAGE_COLUMNS)
    .join(Channel, Channel.id == Package.channel_id)
    .where(Package.id.in_(bindparam("ids", expanding=True)))
)


def packages_by_ids(db: Session, ids: Sequence[int]) -> list[PackageView]:
    """The packages of ``ids``, in that order, with their channels (one query)."""
    if not ids:
        return []
    order = {package_id: n for n, package_id in enumerate(ids)}
    found = sorted(rows(db, _PACKAGES_BY_IDS, ids=list(ids)), key=lambda row: order[row[0]])
    return [
        PackageView._make((row[0], ChannelView._make(row[1:_CHANNEL_END]), *row[_CHANNEL_END:]))
        for row in found
    ]


_NEWEST_BUILDS = select(*_BUILD_SUMMARY_COLUMNS).where(
    Build.id.in_(
        select(func.max(Build.id))
        .where(
            Build.environment_id.in_(bindparam("ids", expanding=True)),
            Build.deleted_on.is_(None),
        )
        .group_by(Build.environment_id)
    )
)


def newest_builds(db: Session, environment_ids: Sequence[int]) -> dict[int, BuildSummary]:
    """The newest live build of each environment, current or not (one query for a page)."""
    if not environment_ids:
        return {}
    found = rows(db, _NEWEST_BUILDS, ids=list(environment_ids))
    return {row[1]: BuildSummary._make(row) for row in found}
