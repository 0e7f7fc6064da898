"""Environments: list, show, switch the current build (rollback), delete, resolve references.

Every switch of an environment's current build is recorded in ``current_build_switch`` (who,
when, from, to), which is what ``NS/NAME@DATE`` references are resolved against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.builds import BuildStatus
from envstore.core.names import validate_name
from envstore.core.permissions import Permission
from envstore.core.refs import EnvRef
from envstore.db.models import (
    Build,
    BuildLogChunk,
    CurrentBuildSwitch,
    Environment,
    Namespace,
    utcnow,
)
from envstore.errors import Conflict, NotFound
from envstore.services.access import visible
from envstore.services.audit import record
from envstore.services.builds import load_build
from envstore.services.common import (
    Page,
    Paging,
    get_environment,
    paginate_ids,
    where_build_matches,
)
from envstore.services.views import (
    BuildView,
    EnvironmentView,
    environment_by_name,
    environment_ids,
    environments_by_ids,
)
from envstore.storage.layout import StoreLayout

__all__ = [
    "EnvFilters",
    "delete_environment",
    "list_environments",
    "load_environment",
    "resolve_ref",
    "switch_current_build",
    "update_description",
]


@dataclass(frozen=True)
class EnvFilters:
    search: str | None = None
    namespace: str | None = None
    name: str | None = None
    status: str | None = None
    packages: Sequence[str] = ()
    artifact: str | None = None


def load_environment(db: Session, namespace: str, name: str) -> EnvironmentView:
    """An environment with its namespace and current build (one query)."""
    validate_name(namespace, kind="namespace")
    validate_name(name, kind="environment name")
    env = environment_by_name(db, namespace, name)
    if env is None:
        raise NotFound(f"environment {namespace}/{name} not found")
    return env


def list_environments(
    db: Session, filters: EnvFilters, paging: Paging, who: Principal, *, own_first: bool = False
) -> Page[EnvironmentView]:
    """The environments ``who`` may read, filtered in SQL (three queries whatever the page
    size). ``own_first`` offers the sort key ``own``: the caller's primary namespace first."""
    query = environment_ids().where(
        Environment.deleted_on.is_(None),
        Namespace.deleted_on.is_(None),
        visible(db, who, Permission.ENV_READ, Namespace.name, Environment.name),
    )
    if filters.search:
        like = f"%{filters.search}%"
        query = query.where(or_(Environment.name.ilike(like), Namespace.name.ilike(like)))
    if filters.namespace:
        query = query.where(Namespace.name == filters.namespace)
    if filters.name:
        query = query.where(Environment.name == filters.name)
    query = where_build_matches(
        query, status=filters.status, artifact=filters.artifact, packages=filters.packages
    )
    sortable: dict[str, Any] = {
        "name": Environment.name,
        "namespace": Namespace.name,
        "id": Environment.id,
    }
    if own_first:
        sortable["own"] = case((Namespace.name == who.primary_namespace, 0), else_=1)
    page = paginate_ids(db, query, paging, sortable, Environment.id)
    return Page(environments_by_ids(db, page.items), page.page, page.size, page.count)


def switch_current_build(
    db: Session, layout: StoreLayout, who: Principal, namespace: str, name: str, build_id: int
) -> EnvironmentView:
    """Make ``build_id`` (a COMPLETED build of this environment) the current build (rollback)."""
    env = get_environment(db, namespace, name)
    build = db.scalar(
        select(Build).where(
            Build.id == build_id, Build.environment_id == env.id, Build.deleted_on.is_(None)
        )
    )
    if build is None:
        raise NotFound(f"build {build_id} is not a build of {namespace}/{name}")
    if build.status != BuildStatus.COMPLETED:
        raise Conflict(
            f"build {build_id} is {build.status}; only a COMPLETED build can be made current"
        )
    layout.check_link(namespace, name)  # refused before the database says otherwise
    if env.current_build_id != build.id:
        record(
            db,
            who,
            "environment.rollback",
            namespace=namespace,
            environment=name,
            target=f"build {build.id}",
            before={"current_build_id": env.current_build_id},
            after={"current_build_id": build.id},
        )
        db.add(
            CurrentBuildSwitch(
                environment_id=env.id,
                from_build_id=env.current_build_id,
                to_build_id=build.id,
                switched_by=who.name,
                switched_on=utcnow(),
            )
        )
        env.current_build_id = build.id
    db.commit()
    assert build.build_key is not None
    layout.publish(namespace, name, build.build_key)
    return load_environment(db, namespace, name)


def update_description(
    db: Session, who: Principal, namespace: str, name: str, description: str
) -> EnvironmentView:
    env = get_environment(db, namespace, name)
    if env.description != description:
        record(
            db,
            who,
            "environment.describe",
            namespace=namespace,
            environment=name,
            before={"description": env.description},
            after={"description": description},
        )
    env.description = description
    db.commit()
    return load_environment(db, namespace, name)


def delete_environment(
    db: Session, layout: StoreLayout, who: Principal, namespace: str, name: str
) -> int:
    """Delete the environment and every build of it; return how many builds that marked.

    What delete means (README "Deleting"): the environment and all its builds are marked
    deleted in one transaction, so every route and command treats them as gone at once (404,
    absent from lists, not resolvable); the rows stay for the record (who switched what, when).
    The environment's link is removed now; the builds' prefixes, blobs and package-cache
    entries are reclaimed by garbage collection once nothing live references them. A name
    submitted again later starts afresh: the deleted builds never come back.
    """
    env = get_environment(db, namespace, name)
    busy = db.scalar(
        select(Build.id).where(
            Build.environment_id == env.id,
            Build.status.in_([BuildStatus.QUEUED, BuildStatus.BUILDING]),
        )
    )
    if busy is not None:
        raise Conflict(
            f"environment {namespace}/{name} has build {busy} in progress; cancel it first"
        )
    db.add(
        CurrentBuildSwitch(
            environment_id=env.id,
            from_build_id=env.current_build_id,
            to_build_id=None,
            switched_by=who.name,
            switched_on=utcnow(),
        )
    )
    record(
        db,
        who,
        "environment.delete",
        namespace=namespace,
        environment=name,
        before={"current_build_id": env.current_build_id},
    )
    now = utcnow()
    marked = db.execute(
        update(Build)
        .where(Build.environment_id == env.id, Build.deleted_on.is_(None))
        .values(deleted_on=now)
    ).rowcount
    # As for one deleted build: its log lives in the database, so it goes now.
    db.execute(
        delete(BuildLogChunk).where(
            BuildLogChunk.build_id.in_(select(Build.id).where(Build.environment_id == env.id))
        )
    )
    env.deleted_on = now
    env.current_build_id = None
    db.commit()
    layout.publish(namespace, name, None)
    return int(marked or 0)


def resolve_ref(db: Session, ref: EnvRef) -> BuildView:
    """The build named by ``NS/NAME``, ``NS/NAME@BUILD`` or ``NS/NAME@DATE``."""
    env = get_environment(db, ref.namespace, ref.name)
    label = f"{ref.namespace}/{ref.name}"
    if ref.build_id is not None or ref.build_key is not None:
        query = select(Build.id).where(Build.environment_id == env.id, Build.deleted_on.is_(None))
        if ref.build_id is not None:
            query = query.where(Build.id == ref.build_id)
        else:
            query = query.where(Build.build_key == ref.build_key)
        found = db.scalar(query)
        if found is None:
            raise NotFound(f"{label} has no build {ref.build_id or ref.build_key}")
        return load_build(db, found)
    if ref.at is not None:
        return load_build(db, _current_at(db, env, label, ref.at))
    if env.current_build_id is None:
        raise NotFound(f"{label} has no current build yet")
    return load_build(db, env.current_build_id)


def _current_at(db: Session, env: Environment, label: str, at: datetime) -> int:
    switch = db.scalar(
        select(CurrentBuildSwitch)
        .where(CurrentBuildSwitch.environment_id == env.id, CurrentBuildSwitch.switched_on <= at)
        .order_by(CurrentBuildSwitch.switched_on.desc(), CurrentBuildSwitch.id.desc())
        .limit(1)
    )
    if switch is None or switch.to_build_id is None:
        raise NotFound(_no_build_then(db, env, label, at))
    return switch.to_build_id


def _no_build_then(db: Session, env: Environment, label: str, at: datetime) -> str:
    """Why a date names no build, with the first moment that would (a date is read as the
    end of that day, UTC)."""
    when = at.isoformat(timespec="seconds")
    first = db.scalar(
        select(CurrentBuildSwitch.switched_on)
        .where(
            CurrentBuildSwitch.environment_id == env.id,
            CurrentBuildSwitch.to_build_id.is_not(None),
            CurrentBuildSwitch.switched_on > at,
        )
        .order_by(CurrentBuildSwitch.switched_on)
        .limit(1)
    )
    if first is None:
        return f"{label} had no current build at {when} (UTC)"
    return (
        f"{label} had no current build at {when} (UTC); its first one became current at "
        f"{first.isoformat(timespec='seconds')}: use that date or a later one"
    )
