"""Small read-only routes: version, permission, usage, channels, packages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy.orm import Session

from envstore import __version__
from envstore.api.deps import DbSession, On, PageQuery, Require
from envstore.api.reading import Read, Reading
from envstore.api.schemas import JSONBody, channel_out, ok, ok_page, package_out, ts
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.services import catalog
from envstore.services.namespaces import usage

router = APIRouter(tags=["server"])

Anyone = Annotated[Principal, Require(None, On.PUBLIC)]
Reader = Annotated[Principal, Require(Permission.ENV_READ, On.LIST)]


@router.get("/")
def api_status(_who: Anyone) -> JSONBody:
    return ok({"version": __version__})


@router.get("/permission/")
async def permission(read: Annotated[Reading, Read(None, On.PUBLIC)]) -> Response:
    """The caller's effective role bindings and the permissions they grant, per pattern."""
    return await read.answer(_permissions)


def _permissions(_db: Session, who: Principal) -> Response:
    roles: dict[str, list[str]] = {}
    perms: dict[str, set[str]] = {}
    for binding in who.effective_bindings:
        roles.setdefault(binding.pattern, []).append(binding.role.value)
        perms.setdefault(binding.pattern, set()).update(binding.permissions)
    return ok(
        {
            "authenticated": who.authenticated,
            "primary_namespace": who.primary_namespace,
            "entity_permissions": {k: sorted(v) for k, v in sorted(perms.items())},
            "entity_roles": dict(sorted(roles.items())),
            "expiration": ts(who.expiration),
        }
    )


@router.get("/usage/")
def get_usage(
    db: DbSession, who: Annotated[Principal, Require(Permission.NAMESPACE_READ, On.LIST)]
) -> JSONBody:
    return ok(usage(db, who))


@router.get("/channel/")
def list_channels(db: DbSession, who: Reader, paging: PageQuery) -> JSONBody:
    page = catalog.list_channels(db, paging, who)
    return ok_page(page, [channel_out(c) for c in page.items])


@router.get("/package/")
def list_packages(
    db: DbSession,
    who: Reader,
    paging: PageQuery,
    search: str | None = None,
    exact: bool = False,
    distinct_on: Annotated[list[str] | None, Query()] = None,
) -> JSONBody:
    page = catalog.list_packages(
        db,
        paging,
        who,
        search=search or None,
        exact=exact,
        distinct_on=tuple(d for d in distinct_on or () if d),
    )
    return ok_page(page, [package_out(p) for p in page.items])
