"""The web UI's pages that change things: create and edit an environment, roll back, and sign in.

Submitting a spec and signing in/out are done by the page script against the API itself
(``POST /api/v1/specification/``, ``POST /login/``, ``POST /logout/``) with JSON from this
origin; rollback is an HTML form post, checked with the API's ``Require`` and the session's
CSRF token, that calls the same service as ``PUT /api/v1/environment/{ns}/{name}/``.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from envstore.api.deps import DbSession, On, Require, State
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.errors import InvalidInput, NotFound
from envstore.services import builds as build_svc
from envstore.services import environments as env_svc
from envstore.services.views import BuildView
from envstore.ui.render import check_csrf, page, redirect, ui_state

router = APIRouter(include_in_schema=False)

_MAX_FORM_BYTES = 64 * 1024


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind our forms send)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput("expected a form post")
    raw = await request.body()
    if len(raw) > _MAX_FORM_BYTES:
        raise InvalidInput("form too large")
    return dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))


Form = Annotated[dict[str, str], Depends(form_fields)]

_STARTER = """\
name: my-env
channels:
  - conda-forge
dependencies:
  - python=3.11
  - numpy
  - pip:
      - requests
"""


@router.get("/login/")
def login(
    request: Request,
    state: State,
    who: Annotated[Principal, Require(None, On.PUBLIC)],
    next: Annotated[str, Query(max_length=2000)] = "",
) -> HTMLResponse:
    prefix = state.settings.url_prefix
    target = next if next.startswith("/") and not next.startswith("//") else f"{prefix}/ui/"
    context = {
        "next": target,
        "local_login": state.settings.local_login,
        "provider": state.provider.name if state.provider is not None else None,
    }
    return page(request, who, "login.html", context, active="login")


@router.get("/new/")
def new_environment(
    request: Request,
    who: Annotated[Principal, Require(Permission.ENV_CREATE, On.ANY)],
    namespace: Annotated[str, Query(max_length=255)] = "",
) -> HTMLResponse:
    context = {
        "editing": None,
        "namespace": namespace or who.primary_namespace,
        "name": "",
        "text": _STARTER,
    }
    return page(request, who, "edit.html", context, active="new")


@router.get("/env/{namespace}/{name}/edit/")
def edit_environment(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_CREATE, On.ENVIRONMENT)],
    namespace: str,
    name: str,
) -> HTMLResponse:
    """The editor, filled with the current build's specification."""
    who.require(Permission.ENV_READ, namespace, name)
    env = env_svc.load_environment(db, namespace, name)
    text = ""
    if env.current_build_id is not None:
        spec = build_svc.load_build(db, env.current_build_id).specification.spec
        text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=False)
    context = {"editing": env, "namespace": namespace, "name": name, "text": text}
    return page(request, who, "edit.html", context, active="environments")


@router.get("/env/{namespace}/{name}/rollback/{build_id}/")
def confirm_rollback(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_UPDATE, On.ENVIRONMENT)],
    namespace: str,
    name: str,
    build_id: int,
) -> HTMLResponse:
    env = env_svc.load_environment(db, namespace, name)
    target = _build_of(db, namespace, name, build_id)
    current = build_svc.load_build(db, env.current_build_id) if env.current_build_id else None
    context = {"env": env, "target": target, "current": current}
    return page(request, who, "rollback.html", context, active="environments")


def _build_of(db: DbSession, namespace: str, name: str, build_id: int) -> BuildView:
    if not 0 < build_id < 2**63:
        raise NotFound(f"build {build_id} is not a build of {namespace}/{name}")
    found = build_svc.load_build(db, build_id)
    if (found.namespace, found.environment) != (namespace, name):
        raise NotFound(f"build {build_id} is not a build of {namespace}/{name}")
    return found


@router.post("/env/{namespace}/{name}/rollback/{build_id}/")
def rollback(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_UPDATE, On.ENVIRONMENT)],
    form: Form,
    namespace: str,
    name: str,
    build_id: int,
) -> RedirectResponse:
    check_csrf(request, form)
    state = ui_state(request)
    env_svc.switch_current_build(db, state.layout, who, namespace, name, build_id)
    return redirect(
        request,
        f"/env/{namespace}/{name}/",
        notice=f"Build {build_id} is now the current build of {namespace}/{name}.",
    )
