"""``/environment/``: list, show, switch the current build (rollback), describe, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.orm import Session

from envstore.api.deps import DbSession, On, PageQuery, Require, State
from envstore.api.reading import Read, Reading
from envstore.api.schemas import (
    EnvironmentUpdate,
    JSONBody,
    build_out,
    environment_out,
    ok,
    ok_page,
)
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.core.refs import parse_ref
from envstore.errors import InvalidInput
from envstore.services import environments as svc
from envstore.services.artifacts import lockfile_text

router = APIRouter(tags=["environments"])

Reader = Annotated[Principal, Require(Permission.ENV_READ, On.ENVIRONMENT)]


@router.get("/environment/")
async def list_environments(
    read: Annotated[Reading, Read(Permission.ENV_READ, On.LIST)],
    paging: PageQuery,
    search: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
    status: str | None = None,
    artifact: str | None = None,
    packages: Annotated[list[str] | None, Query()] = None,
) -> Response:
    filters = svc.EnvFilters(
        search or None,
        namespace or None,
        name or None,
        status or None,
        tuple(p for p in packages or () if p),
        artifact or None,
    )

    def render(db: Session, who: Principal) -> Response:
        page = svc.list_environments(db, filters, paging, who)
        return ok_page(page, [environment_out(env) for env in page.items])

    return await read.answer(render)


@router.get("/environment/{namespace}/{name}/")
async def get_environment(
    read: Annotated[Reading, Read(Permission.ENV_READ, On.ENVIRONMENT)], namespace: str, name: str
) -> Response:
    return await read.answer(
        lambda db, _who: ok(environment_out(svc.load_environment(db, namespace, name)))
    )


@router.put("/environment/{namespace}/{name}/")
def update_environment(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_UPDATE, On.ENVIRONMENT)],
    state: State,
    namespace: str,
    name: str,
    body: EnvironmentUpdate,
) -> JSONBody:
    if body.build_id is None and body.description is None:
        raise InvalidInput("give 'build_id' (to switch the current build) or 'description'")
    env = None
    if body.description is not None:
        env = svc.update_description(db, who, namespace, name, body.description)
    if body.build_id is not None:
        env = svc.switch_current_build(db, state.layout, who, namespace, name, body.build_id)
        return ok(
            environment_out(env),
            f"build {body.build_id} is now the current build of {namespace}/{name}",
        )
    return ok(environment_out(env) if env else None, "environment updated")


@router.delete("/environment/{namespace}/{name}/")
def delete_environment(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_DELETE, On.ENVIRONMENT)],
    state: State,
    namespace: str,
    name: str,
) -> dict[str, Any]:
    marked = svc.delete_environment(db, state.layout, who, namespace, name)
    return {
        "status": "ok",
        "message": f"environment {namespace}/{name} deleted with its {marked} build(s); "
        "garbage collection reclaims their space",
    }


@router.get("/environment/{namespace}/{name}/lockfile/", response_class=PlainTextResponse)
@router.get("/environment/{namespace}/{name}/conda-lock.yml", response_class=PlainTextResponse)
@router.get("/environment/{namespace}/{name}/conda-lock.yaml", response_class=PlainTextResponse)
def environment_lockfile(
    db: DbSession, _who: Reader, state: State, namespace: str, name: str
) -> PlainTextResponse:
    build = svc.resolve_ref(db, parse_ref(f"{namespace}/{name}"))
    return PlainTextResponse(lockfile_text(db, state.blobs, build.id), media_type="text/yaml")


@router.get("/resolve/{namespace}/{name}/")
def resolve(
    db: DbSession, _who: Reader, state: State, namespace: str, name: str, ref: str = ""
) -> JSONBody:
    """The build named by ``ref``: a build id, a build key, a date or nothing (the current one)."""
    target = f"{namespace}/{name}@{ref}" if ref else f"{namespace}/{name}"
    return ok(build_out(svc.resolve_ref(db, parse_ref(target)), state.layout))
