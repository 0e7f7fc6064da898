"""``/namespace/``: list, show, create, update metadata, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from envstore.api.deps import Caller, DbSession, PageQuery
from envstore.api.schemas import NamespaceUpdate, namespace_out, ok, ok_page
from envstore.services import namespaces as svc
from envstore.services.common import get_namespace

router = APIRouter(tags=["namespaces"])


@router.get("/namespace/")
def list_namespaces(db: DbSession, _who: Caller, paging: PageQuery) -> dict[str, Any]:
    page = svc.list_namespaces(db, paging)
    return ok_page(page, [namespace_out(ns) for ns in page.items])


@router.get("/namespace/{namespace}/")
def show_namespace(db: DbSession, _who: Caller, namespace: str) -> dict[str, Any]:
    return ok(namespace_out(get_namespace(db, namespace), full=True))


@router.post("/namespace/{namespace}/")
def create_namespace(db: DbSession, _who: Caller, namespace: str) -> dict[str, Any]:
    svc.create_namespace(db, namespace)
    return {"status": "ok", "message": f"namespace {namespace} created"}


@router.put("/namespace/{namespace}/")
def update_namespace(
    db: DbSession, _who: Caller, namespace: str, body: NamespaceUpdate
) -> dict[str, Any]:
    ns = svc.update_namespace(db, namespace, body.metadata)
    return ok(namespace_out(ns, full=True), f"namespace {namespace} updated")


@router.delete("/namespace/{namespace}/")
def delete_namespace(db: DbSession, _who: Caller, namespace: str) -> dict[str, Any]:
    svc.delete_namespace(db, namespace)
    return {"status": "ok", "message": f"namespace {namespace} deleted"}
