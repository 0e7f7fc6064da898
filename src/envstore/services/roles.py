"""Namespace role mappings: who holds which role on ``{namespace}/*``.

Entities are ``user:NAME`` (a bare ``NAME`` means the same), ``group:NAME``,
``namespace:NAME`` (namespace-to-namespace sharing: the callers whose primary namespace is
``NAME``) and ``*`` (every signed-in user). The ``/namespace/{ns}/role`` routes manage the
``namespace:`` kind; ``role_mappings`` in ``PUT /namespace/{ns}/`` manage all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.names import validate_name
from envstore.core.permissions import parse_role
from envstore.db.models import NamespaceRoleMapping
from envstore.errors import Conflict, InvalidInput, NotFound
from envstore.services.audit import record
from envstore.services.common import get_namespace

__all__ = [
    "delete_shared",
    "get_shared",
    "list_mappings",
    "list_shared",
    "normalise_entity",
    "replace_mappings",
    "share",
]

_KINDS = ("user", "group", "namespace")
_SHARED = "namespace:"


def normalise_entity(entity: str) -> str:
    entity = entity.strip()
    if entity == "*":
        return entity
    kind, sep, name = entity.partition(":")
    if not sep:
        kind, name = "user", entity
    if kind not in _KINDS:
        raise InvalidInput(f"entity {entity!r}: use user:NAME, group:NAME, namespace:NAME or *")
    return f"{kind}:{validate_name(name, kind=f'{kind} name')}"


def list_mappings(db: Session, namespace: str) -> list[NamespaceRoleMapping]:
    ns = get_namespace(db, namespace)
    return list(
        db.scalars(
            select(NamespaceRoleMapping)
            .where(NamespaceRoleMapping.namespace_id == ns.id)
            .order_by(NamespaceRoleMapping.id)
        )
    )


def _snapshot(db: Session, namespace: str) -> dict[str, str]:
    return {m.entity: m.role for m in list_mappings(db, namespace)}


def replace_mappings(db: Session, who: Principal, namespace: str, mappings: Iterable[Any]) -> None:
    """Set the namespace's mappings to exactly ``mappings`` (``[{"entity", "role"}]``)."""
    ns = get_namespace(db, namespace)
    wanted: dict[str, str] = {}
    for item in mappings:
        if not isinstance(item, dict) or not {"entity", "role"} <= item.keys():
            raise InvalidInput("each role mapping needs 'entity' and 'role'")
        entity = normalise_entity(str(item["entity"]))
        wanted[entity] = parse_role(str(item["role"])).value
    before = _snapshot(db, namespace)
    if before != wanted:
        record(db, who, "namespace.role_mappings", namespace=namespace, before=before, after=wanted)
    db.execute(delete(NamespaceRoleMapping).where(NamespaceRoleMapping.namespace_id == ns.id))
    db.add_all(
        NamespaceRoleMapping(namespace_id=ns.id, entity=e, role=r) for e, r in wanted.items()
    )
    db.commit()


def _shared_row(db: Session, namespace: str, other: str) -> NamespaceRoleMapping | None:
    ns = get_namespace(db, namespace)
    entity = _SHARED + validate_name(other, kind="other namespace")
    return db.scalar(
        select(NamespaceRoleMapping).where(
            NamespaceRoleMapping.namespace_id == ns.id, NamespaceRoleMapping.entity == entity
        )
    )


def list_shared(db: Session, namespace: str) -> list[dict[str, str]]:
    return [
        {"namespace": namespace, "other_namespace": m.entity[len(_SHARED) :], "role": m.role}
        for m in list_mappings(db, namespace)
        if m.entity.startswith(_SHARED)
    ]


def get_shared(db: Session, namespace: str, other: str) -> dict[str, str]:
    row = _shared_row(db, namespace, other)
    if row is None:
        raise NotFound(f"namespace {namespace!r} is not shared with {other!r}")
    return {"namespace": namespace, "other_namespace": other, "role": row.role}


def share(
    db: Session, who: Principal, namespace: str, other: str, role: str, *, create: bool
) -> None:
    """Give ``other``'s callers ``role`` on ``namespace`` (create: 409 if there; else 404 if not)."""
    row = _shared_row(db, namespace, other)
    value = parse_role(role).value
    if create and row is not None:
        raise Conflict(f"namespace {namespace!r} is already shared with {other!r}; use PUT")
    if not create and row is None:
        raise NotFound(f"namespace {namespace!r} is not shared with {other!r}")
    record(
        db,
        who,
        "namespace.share",
        namespace=namespace,
        target=_SHARED + other,
        before={"role": row.role} if row is not None else None,
        after={"role": value},
    )
    if row is None:
        ns = get_namespace(db, namespace)
        db.add(NamespaceRoleMapping(namespace_id=ns.id, entity=_SHARED + other, role=value))
    else:
        row.role = value
    db.commit()


def delete_shared(db: Session, who: Principal, namespace: str, other: str | None) -> None:
    """Stop sharing with ``other``, or with every namespace when ``other`` is None."""
    ns = get_namespace(db, namespace)
    before = {e: r for e, r in _snapshot(db, namespace).items() if e.startswith(_SHARED)}
    query = delete(NamespaceRoleMapping).where(NamespaceRoleMapping.namespace_id == ns.id)
    if other is None:
        query = query.where(NamespaceRoleMapping.entity.startswith(_SHARED))
    else:
        if _shared_row(db, namespace, other) is None:
            raise NotFound(f"namespace {namespace!r} is not shared with {other!r}")
        query = query.where(NamespaceRoleMapping.entity == _SHARED + other)
        before = {_SHARED + other: before.get(_SHARED + other, "")}
    if before:
        record(db, who, "namespace.unshare", namespace=namespace, before=before)
    db.execute(query)
    db.commit()
