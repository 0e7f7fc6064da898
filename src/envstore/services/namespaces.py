"""Namespaces: list, show, create, update metadata, delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.builds import BuildStatus
from envstore.core.names import validate_name
from envstore.db.models import Build, Environment, Namespace, utcnow
from envstore.errors import Conflict
from envstore.services.access import visible_namespaces
from envstore.services.audit import record
from envstore.services.common import Page, Paging, get_namespace, paginate

__all__ = ["create_namespace", "delete_namespace", "list_namespaces", "update_namespace", "usage"]


def list_namespaces(db: Session, paging: Paging, who: Principal) -> Page[Namespace]:
    query = select(Namespace).where(Namespace.deleted_on.is_(None), visible_namespaces(db, who))
    return paginate(db, query, paging, {"name": Namespace.name, "id": Namespace.id}, Namespace.id)


def create_namespace(db: Session, who: Principal, name: str) -> Namespace:
    validate_name(name, kind="namespace")
    existing = db.scalar(select(Namespace).where(Namespace.name == name))
    if existing is not None and existing.deleted_on is None:
        raise Conflict(f"namespace {name!r} already exists")
    if existing is not None:
        existing.deleted_on = None
        namespace = existing
    else:
        namespace = Namespace(name=name, metadata_={})
        db.add(namespace)
    record(db, who, "namespace.create", namespace=name)
    db.commit()
    return namespace


def update_namespace(
    db: Session, who: Principal, name: str, metadata: dict[str, Any] | None
) -> Namespace:
    namespace = get_namespace(db, name)
    if metadata is not None and metadata != namespace.metadata_:
        record(
            db,
            who,
            "namespace.metadata",
            namespace=name,
            before=namespace.metadata_,
            after=metadata,
        )
        namespace.metadata_ = metadata
    db.commit()
    return namespace


def delete_namespace(db: Session, who: Principal, name: str) -> None:
    """Soft-delete an empty namespace (no live environments, nothing building)."""
    namespace = get_namespace(db, name)
    live = db.scalar(
        select(func.count()).where(
            Environment.namespace_id == namespace.id, Environment.deleted_on.is_(None)
        )
    )
    if live:
        raise Conflict(f"namespace {name!r} still has {live} environment(s); delete them first")
    busy = db.scalar(
        select(Build.id)
        .join(Environment, Environment.id == Build.environment_id)
        .where(
            Environment.namespace_id == namespace.id,
            Build.status.in_([BuildStatus.QUEUED, BuildStatus.BUILDING]),
        )
    )
    if busy is not None:
        raise Conflict(f"namespace {name!r} has build {busy} in progress")
    namespace.deleted_on = utcnow()
    record(db, who, "namespace.delete", namespace=name)
    db.commit()


def usage(db: Session, who: Principal) -> list[dict[str, Any]]:
    """Per visible namespace: live environments, builds and bytes of builds (2 queries)."""
    seen = visible_namespaces(db, who)
    envs = dict(
        db.execute(
            select(Namespace.name, func.count(Environment.id))
            .outerjoin(
                Environment,
                (Environment.namespace_id == Namespace.id) & Environment.deleted_on.is_(None),
            )
            .where(Namespace.deleted_on.is_(None), seen)
            .group_by(Namespace.name)
        )
        .tuples()
        .all()
    )
    builds = {
        row[0]: (row[1], row[2])
        for row in db.execute(
            select(Namespace.name, func.count(Build.id), func.coalesce(func.sum(Build.size), 0))
            .join(Environment, Environment.namespace_id == Namespace.id)
            .join(Build, Build.environment_id == Environment.id)
            .where(Build.deleted_on.is_(None), seen)
            .group_by(Namespace.name)
        ).tuples()
    }
    return [
        {
            "namespace": name,
            "num_environments": count,
            "num_builds": builds.get(name, (0, 0))[0],
            "storage": int(builds.get(name, (0, 0))[1]),
        }
        for name, count in sorted(envs.items())
    ]
