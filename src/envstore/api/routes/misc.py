"""Small read-only routes: version, permission, usage, channels, packages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from envstore import __version__
from envstore.api.deps import Caller, DbSession, PageQuery
from envstore.api.schemas import channel_out, ok, ok_page, package_out
from envstore.services import catalog
from envstore.services.namespaces import usage

router = APIRouter(tags=["server"])

_ALL_PERMISSIONS = [
    "namespace::read",
    "namespace::create",
    "namespace::update",
    "namespace::delete",
    "namespace-role-mapping::read",
    "namespace-role-mapping::create",
    "namespace-role-mapping::update",
    "namespace-role-mapping::delete",
    "environment::read",
    "environment::update",
    "environment::delete",
    "environment:create",
    "build::cancel",
    "build::delete",
    "setting::read",
    "setting::update",
]


@router.get("/")
def api_status() -> dict[str, Any]:
    return ok({"version": __version__})


@router.get("/permission/")
def permission(who: Caller) -> dict[str, Any]:
    """The caller's effective permissions (the single trusted user may do everything)."""
    return ok(
        {
            "authenticated": who.authenticated,
            "primary_namespace": who.primary_namespace,
            "entity_permissions": {"*/*": _ALL_PERMISSIONS},
            "entity_roles": {"*/*": ["admin"]},
            "expiration": None,
        }
    )


@router.get("/usage/")
def get_usage(db: DbSession, _who: Caller) -> dict[str, Any]:
    return ok(usage(db))


@router.get("/channel/")
def list_channels(db: DbSession, _who: Caller, paging: PageQuery) -> dict[str, Any]:
    page = catalog.list_channels(db, paging)
    return ok_page(page, [channel_out(c) for c in page.items])


@router.get("/package/")
def list_packages(
    db: DbSession,
    _who: Caller,
    paging: PageQuery,
    search: str | None = None,
    exact: bool = False,
    distinct_on: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    page = catalog.list_packages(
        db,
        paging,
        search=search or None,
        exact=exact,
        distinct_on=tuple(d for d in distinct_on or () if d),
    )
    return ok_page(page, [package_out(p) for p in page.items])
