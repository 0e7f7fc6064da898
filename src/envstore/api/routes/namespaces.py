"""``/namespace/``: list, show, create, update (metadata, role mappings), delete, and
namespace-to-namespace sharing (``/namespace/{ns}/role``, ``/roles``, ``/metadata``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from envstore.api.deps import DbSession, On, PageQuery, Require
from envstore.api.reading import Read, Reading
from envstore.api.schemas import JSONBody, NamespaceUpdate, namespace_out, ok, ok_page
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.errors import InvalidInput
from envstore.services import namespaces as svc
from envstore.services import roles
from envstore.services.common import get_namespace

router = APIRouter(tags=["namespaces"])

P = Permission


def _on_ns(permission: Permission) -> Any:
    return Require(permission, On.NAMESPACE)


class NamespaceRole(BaseModel):
    other_namespace: str
    role: str | None = None


def _full(db: DbSession, namespace: str) -> dict[str, Any]:
    data = namespace_out(get_namespace(db, namespace), full=True)
    data["role_mappings"] = [
        {"id": m.id, "entity": m.entity, "role": m.role} for m in roles.list_mappings(db, namespace)
    ]
    return data


@router.get("/namespace/")
async def list_namespaces(
    read: Annotated[Reading, Read(P.NAMESPACE_READ, On.LIST)], paging: PageQuery
) -> Response:
    def render(db: Session, who: Principal) -> Response:
        page = svc.list_namespaces(db, paging, who)
        return ok_page(page, [namespace_out(ns) for ns in page.items])

    return await read.answer(render)


@router.get("/namespace/{namespace}/")
def show_namespace(
    db: DbSession, _who: Annotated[Principal, _on_ns(P.NAMESPACE_READ)], namespace: str
) -> JSONBody:
    return ok(_full(db, namespace))


@router.post("/namespace/{namespace}/")
def create_namespace(
    db: DbSession, who: Annotated[Principal, _on_ns(P.NAMESPACE_CREATE)], namespace: str
) -> dict[str, Any]:
    svc.create_namespace(db, who, namespace)
    return {"status": "ok", "message": f"namespace {namespace} created"}


@router.put("/namespace/{namespace}/")
def update_namespace(
    db: DbSession,
    who: Annotated[Principal, _on_ns(P.NAMESPACE_UPDATE)],
    namespace: str,
    body: NamespaceUpdate,
) -> JSONBody:
    """Metadata and, when given, the full list of role mappings (needs the mapping rights)."""
    svc.update_namespace(db, who, namespace, body.metadata)
    if body.role_mappings is not None:
        who.require(P.ROLE_MAPPING_UPDATE, namespace)
        mappings = body.role_mappings
        if isinstance(mappings, dict):  # {"entity": "role"} is accepted too
            mappings = [{"entity": k, "role": v} for k, v in mappings.items()]
        roles.replace_mappings(db, who, namespace, mappings)
    return ok(_full(db, namespace), f"namespace {namespace} updated")


@router.put("/namespace/{namespace}/metadata")
def update_metadata(
    db: DbSession,
    who: Annotated[Principal, _on_ns(P.NAMESPACE_UPDATE)],
    namespace: str,
    body: dict[str, Any],
) -> JSONBody:
    svc.update_namespace(db, who, namespace, body.get("metadata", body))
    return ok(_full(db, namespace), f"namespace {namespace} metadata updated")


@router.delete("/namespace/{namespace}/")
def delete_namespace(
    db: DbSession, who: Annotated[Principal, _on_ns(P.NAMESPACE_DELETE)], namespace: str
) -> dict[str, Any]:
    svc.delete_namespace(db, who, namespace)
    return {"status": "ok", "message": f"namespace {namespace} deleted"}


@router.get("/namespace/{namespace}/roles")
def list_roles(
    db: DbSession, _who: Annotated[Principal, _on_ns(P.ROLE_MAPPING_READ)], namespace: str
) -> JSONBody:
    return ok(roles.list_shared(db, namespace))


@router.delete("/namespace/{namespace}/roles")
def delete_roles(
    db: DbSession, who: Annotated[Principal, _on_ns(P.ROLE_MAPPING_DELETE)], namespace: str
) -> dict[str, Any]:
    roles.delete_shared(db, who, namespace, None)
    return {"status": "ok", "message": f"namespace {namespace} is shared with no namespace"}


@router.get("/namespace/{namespace}/role")
def get_role(
    db: DbSession,
    _who: Annotated[Principal, _on_ns(P.ROLE_MAPPING_READ)],
    namespace: str,
    other_namespace: str,
) -> JSONBody:
    return ok(roles.get_shared(db, namespace, other_namespace))


def _role_of(body: NamespaceRole) -> str:
    if not body.role:
        raise InvalidInput("give the 'role' to share with")
    return body.role


@router.post("/namespace/{namespace}/role")
def create_role(
    db: DbSession,
    who: Annotated[Principal, _on_ns(P.ROLE_MAPPING_CREATE)],
    namespace: str,
    body: NamespaceRole,
) -> JSONBody:
    roles.share(db, who, namespace, body.other_namespace, _role_of(body), create=True)
    return ok(roles.get_shared(db, namespace, body.other_namespace), "namespace shared")


@router.put("/namespace/{namespace}/role")
def update_role(
    db: DbSession,
    who: Annotated[Principal, _on_ns(P.ROLE_MAPPING_UPDATE)],
    namespace: str,
    body: NamespaceRole,
) -> JSONBody:
    roles.share(db, who, namespace, body.other_namespace, _role_of(body), create=False)
    return ok(roles.get_shared(db, namespace, body.other_namespace), "role updated")


@router.delete("/namespace/{namespace}/role")
def delete_role(
    db: DbSession,
    who: Annotated[Principal, _on_ns(P.ROLE_MAPPING_DELETE)],
    namespace: str,
    body: NamespaceRole,
) -> dict[str, Any]:
    roles.delete_shared(db, who, namespace, body.other_namespace)
    return {"status": "ok", "message": f"{namespace} no longer shared with {body.other_namespace}"}
