"""Channels and packages known from builds (``/channel/``, ``/package/``).

Both show only what the caller's visible builds used: a package name can be as private as
the environment that pulled it in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.db.models import Build, BuildPackage, Channel, Environment, Namespace, Package
from envstore.errors import InvalidInput
from envstore.services.access import visible
from envstore.services.common import Page, Paging, paginate, paginate_ids
from envstore.services.views import PackageView, packages_by_ids

__all__ = ["list_channels", "list_packages"]

_DISTINCT = {"name": Package.name, "version": Package.version, "channel": Package.channel_id}


def _visible_packages(db: Session, who: Principal) -> Select[Any]:
    return (
        select(BuildPackage.package_id)
        .join(Build, Build.id == BuildPackage.build_id)
        .join(Environment, Environment.id == Build.environment_id)
        .join(Namespace, Namespace.id == Environment.namespace_id)
        .where(
            Build.deleted_on.is_(None),
            visible(db, who, Permission.ENV_READ, Namespace.name, Environment.name),
        )
    )


def list_channels(db: Session, paging: Paging, who: Principal) -> Page[Channel]:
    used = select(Package.channel_id).where(Package.id.in_(_visible_packages(db, who)))
    query = select(Channel).where(Channel.id.in_(used))
    return paginate(db, query, paging, {"name": Channel.name, "id": Channel.id}, Channel.id)


def list_packages(
    db: Session,
    paging: Paging,
    who: Principal,
    *,
    search: str | None,
    exact: bool,
    distinct_on: Sequence[str],
) -> Page[PackageView]:
    seen = _visible_packages(db, who)
    query = (
        select(Package.id)
        .join(Channel, Channel.id == Package.channel_id)
        .where(Package.id.in_(seen))
    )
    if search:
        query = query.where(Package.name == search if exact else Package.name.contains(search))
    unknown = [d for d in distinct_on if d not in _DISTINCT]
    if unknown:
        raise InvalidInput(
            f"cannot make packages distinct on {unknown}; choose from name, version, channel"
        )
    if distinct_on:
        firsts = (
            select(func.min(Package.id))
            .where(Package.id.in_(seen))
            .group_by(*[_DISTINCT[d] for d in distinct_on])
        )
        query = query.where(Package.id.in_(firsts))
    sortable = {"name": Package.name, "version": Package.version, "id": Package.id}
    page = paginate_ids(db, query, paging, sortable, Package.id)
    return Page(packages_by_ids(db, page.items), page.page, page.size, page.count)
