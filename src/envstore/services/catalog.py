"""Channels and packages known from builds (``/channel/``, ``/package/``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from envstore.db.models import Channel, Package
from envstore.errors import InvalidInput
from envstore.services.common import Page, Paging, paginate

__all__ = ["list_channels", "list_packages"]

_DISTINCT = {"name": Package.name, "version": Package.version, "channel": Package.channel_id}


def list_channels(db: Session, paging: Paging) -> Page[Channel]:
    return paginate(
        db, select(Channel), paging, {"name": Channel.name, "id": Channel.id}, Channel.id
    )


def list_packages(
    db: Session, paging: Paging, *, search: str | None, exact: bool, distinct_on: Sequence[str]
) -> Page[Package]:
    query = select(Package)
    if search:
        query = query.where(Package.name == search if exact else Package.name.contains(search))
    unknown = [d for d in distinct_on if d not in _DISTINCT]
    if unknown:
        raise InvalidInput(
            f"cannot make packages distinct on {unknown}; choose from name, version, channel"
        )
    if distinct_on:
        firsts = select(func.min(Package.id)).group_by(*[_DISTINCT[d] for d in distinct_on])
        query = query.where(Package.id.in_(firsts))
    sortable = {"name": Package.name, "version": Package.version, "id": Package.id}
    return paginate(db, query, paging, sortable, Package.id)
