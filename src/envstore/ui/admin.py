"""The web UI's account and administration pages: API tokens, and namespaces with their role
mappings. Form posts carry the session's CSRF token and call the services of ``/token/`` and
``/namespace/`` after the same permission checks as those API routes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from envstore.api.deps import DbSession, On, Require
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.db.models import utcnow
from envstore.errors import EnvstoreError, Forbidden, InvalidInput
from envstore.services import namespaces as ns_svc
from envstore.services import roles
from envstore.services import tokens as token_svc
from envstore.services.common import MAX_PAGE_SIZE, Paging
from envstore.ui.forms import Form
from envstore.ui.render import check_csrf, page, redirect, ui_state

router = APIRouter(include_in_schema=False)

Anyone = Annotated[Principal, Require(None, On.PUBLIC)]
_ROLES = ("viewer", "editor", "admin")
_MAX_BINDINGS = 20


def _tokens_page(
    request: Request,
    db: DbSession,
    who: Principal,
    *,
    new_token: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    context = {
        "tokens": token_svc.list_tokens(db, who),
        "new_token": new_token,
        "error": error,
        "roles": _ROLES,
        "bindings": [b for b in who.effective_bindings if b.role.value in _ROLES],
        "now": utcnow(),
        "request_notice": request.query_params.get("notice", "")[:300],
    }
    return page(request, who, "tokens.html", context, status=status, active="tokens")


@router.get("/tokens/")
def tokens(request: Request, db: DbSession, who: Anyone) -> HTMLResponse:
    return _tokens_page(request, db, who)


def _token_request(form: dict[str, str]) -> token_svc.TokenRequest:
    name = form.get("name", "").strip()
    if not name:
        raise InvalidInput("give the token a name, to recognise it in the list later")
    expires: datetime | None = None
    days = form.get("days", "").strip()
    if days:
        if not days.isdigit() or not 1 <= int(days) <= 3650:
            raise InvalidInput("the expiry must be a whole number of days from 1 to 3650")
        expires = utcnow() + timedelta(days=int(days))
    bindings: dict[str, list[str]] = {}
    for n in range(_MAX_BINDINGS):
        pattern = form.get(f"pattern{n}", "").strip()
        role = form.get(f"role{n}", "").strip()
        if pattern:
            if role not in _ROLES:
                raise InvalidInput(f"choose a role for {pattern!r}")
            bindings.setdefault(pattern, []).append(role)
    return token_svc.TokenRequest(
        name=name, expiration=expires, role_bindings=bindings if bindings else None
    )


@router.post("/tokens/")
def create_token(request: Request, db: DbSession, who: Anyone, form: Form) -> HTMLResponse:
    """Create a token; the page shows its secret this once (only its hash is kept)."""
    check_csrf(request, form)
    if not who.authenticated:
        return _tokens_page(request, db, who, error="sign in to create tokens", status=403)
    try:
        secret, _row = token_svc.create_token(
            db, ui_state(request).settings, who, _token_request(form)
        )
    except EnvstoreError as exc:
        status = 403 if isinstance(exc, Forbidden) else 400
        return _tokens_page(request, db, who, error=exc.message, status=status)
    return _tokens_page(request, db, who, new_token=secret)


@router.post("/tokens/{token_id}/revoke/")
def revoke_token(
    request: Request, db: DbSession, who: Anyone, form: Form, token_id: int
) -> RedirectResponse:
    check_csrf(request, form)
    if not 0 < token_id < 2**63:
        raise InvalidInput("token id out of range")
    token_svc.revoke_token(db, who, token_id)
    return redirect(request, "/tokens/", notice=f"Token {token_id} revoked.")


@router.get("/namespaces/")
def namespaces(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.NAMESPACE_READ, On.LIST)],
) -> HTMLResponse:
    found = ns_svc.list_namespaces(db, Paging(1, MAX_PAGE_SIZE, ("name",)), who)
    rows = []
    for ns in found.items:
        can_roles = who.can_in_namespace(Permission.ROLE_MAPPING_READ, ns.name)
        rows.append(
            {
                "name": ns.name,
                "mappings": roles.list_mappings(db, ns.name) if can_roles else None,
                "can_delete": who.can(Permission.NAMESPACE_DELETE, ns.name),
                "can_map": who.can(Permission.ROLE_MAPPING_UPDATE, ns.name),
            }
        )
    context = {
        "namespaces": rows,
        "count": found.count,
        "can_create": who.can_somewhere(Permission.NAMESPACE_CREATE),
        "roles": _ROLES,
        "notice": request.query_params.get("notice", ""),
    }
    return page(request, who, "namespaces.html", context, active="ns")


@router.post("/namespaces/")
def create_namespace(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.NAMESPACE_CREATE, On.ANY)],
    form: Form,
) -> RedirectResponse:
    name = form.get("name", "").strip()
    who.require(Permission.NAMESPACE_CREATE, name or "-")
    check_csrf(request, form)
    ns_svc.create_namespace(db, who, name)
    return redirect(request, "/namespaces/", notice=f"Namespace {name} created.")


@router.post("/namespaces/{namespace}/delete/")
def delete_namespace(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.NAMESPACE_DELETE, On.NAMESPACE)],
    form: Form,
    namespace: str,
) -> RedirectResponse:
    check_csrf(request, form)
    if form.get("confirm", "").strip() != namespace:
        raise InvalidInput(f"type the namespace name {namespace!r} to confirm the deletion")
    ns_svc.delete_namespace(db, who, namespace)
    return redirect(request, "/namespaces/", notice=f"Namespace {namespace} deleted.")


@router.post("/namespaces/{namespace}/roles/")
def update_roles(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ROLE_MAPPING_UPDATE, On.NAMESPACE)],
    form: Form,
    namespace: str,
) -> RedirectResponse:
    """Add one mapping (``entity``, ``role``) or remove one (``remove`` = its id)."""
    check_csrf(request, form)
    current = [
        {"entity": m.entity, "role": m.role, "id": m.id} for m in roles.list_mappings(db, namespace)
    ]
    remove = form.get("remove", "")
    if remove:
        kept = [m for m in current if str(m["id"]) != remove]
        message = f"Role mapping removed from {namespace}."
    else:
        entity, role = form.get("entity", "").strip(), form.get("role", "").strip()
        if not entity or role not in _ROLES:
            raise InvalidInput("give who (a user, group:NAME or *) and a role")
        kept = [*current, {"entity": entity, "role": role}]
        message = f"{entity} is now {role} of {namespace}."
    roles.replace_mappings(
        db, who, namespace, [{"entity": m["entity"], "role": m["role"]} for m in kept]
    )
    return redirect(request, "/namespaces/", notice=message)
