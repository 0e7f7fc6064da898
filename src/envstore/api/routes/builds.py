"""``/build/``: list, show, rebuild, cancel, delete; logs, packages, lockfile and YAML."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.orm import Session

from envstore.api.deps import DbSession, On, PageQuery, Require, State
from envstore.api.params import MAX_OFFSET, Id, OptionalIdQuery
from envstore.api.reading import Read, Reading
from envstore.api.schemas import JSONBody, build_out, ok, ok_page, package_out
from envstore.api.waiting import LogWait, WaitQuery, wait_for_build
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.services import builds as svc
from envstore.services.artifacts import artifact_bytes
from envstore.services.submit import check_submit_quota, rebuild

router = APIRouter(tags=["builds"])

Reader = Annotated[Principal, Require(Permission.ENV_READ, On.BUILD)]
BuildReading = Annotated[Reading, Read(Permission.ENV_READ, On.BUILD)]


@router.get("/build/")
async def list_builds(
    read: Annotated[Reading, Read(Permission.ENV_READ, On.LIST)],
    paging: PageQuery,
    status: str | None = None,
    environment_id: OptionalIdQuery = None,
    namespace: str | None = None,
    name: str | None = None,
    artifact: str | None = None,
    packages: Annotated[list[str] | None, Query()] = None,
) -> Response:
    filters = svc.BuildFilters(
        status or None,
        environment_id,
        namespace or None,
        name or None,
        tuple(p for p in packages or () if p),
        artifact or None,
    )
    layout = read.state.layout

    def render(db: Session, who: Principal) -> Response:
        page = svc.list_builds(db, filters, paging, who)
        return ok_page(page, [build_out(b, layout) for b in page.items])

    return await read.answer(render)


@router.get("/build/{build_id}/")
async def get_build(read: BuildReading, build_id: Id, wait: WaitQuery = 0) -> Response:
    """One build; with ``wait=S``, an unfinished build is answered when its status changes."""
    if wait > 0:
        await read.check()  # a caller who may not see the build does not wait on it
        await wait_for_build(read.state, build_id, wait)
    layout = read.state.layout
    return await read.answer(lambda db, _who: ok(build_out(svc.load_build(db, build_id), layout)))


@router.put("/build/{build_id}/")
def rebuild_build(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_UPDATE, On.BUILD)],
    state: State,
    build_id: Id,
) -> JSONBody:
    check_submit_quota(db, who, state.settings.submit_quota_per_minute)
    build = rebuild(db, who, build_id, state.policy_inputs)
    state.wake_workers(build.id)
    return ok({"build_id": build.id}, f"build {build.id} queued to rebuild build {build_id}")


@router.put("/build/{build_id}/cancel/")
def cancel_build(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.BUILD_CANCEL, On.BUILD)],
    state: State,
    build_id: Id,
) -> dict[str, Any]:
    build = svc.cancel_build(db, who, build_id)
    state.wake_workers(build.id)
    return {
        "status": "ok",
        "message": f"build {build_id} canceled"
        if build.status == "CANCELED"
        else f"build {build_id} is being canceled",
    }


@router.delete("/build/{build_id}/")
def delete_build(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.BUILD_DELETE, On.BUILD)],
    build_id: Id,
) -> dict[str, Any]:
    svc.delete_build(db, who, build_id)
    return {"status": "ok", "message": f"build {build_id} deleted"}


@router.get("/build/{build_id}/packages/")
async def build_packages(
    read: BuildReading,
    paging: PageQuery,
    build_id: Id,
    search: str | None = None,
    exact: bool = False,
    build: str | None = None,
) -> Response:
    def render(db: Session, _who: Principal) -> Response:
        page = svc.build_packages(
            db, build_id, paging, search=search or None, exact=exact, build=build or None
        )
        return ok_page(page, [package_out(pkg, requested) for pkg, requested in page.items])

    return await read.answer(render)


@router.get("/build/{build_id}/logs/", response_class=PlainTextResponse)
def build_logs(
    db: DbSession,
    _who: Reader,
    build_id: Id,
    _waited: LogWait,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> PlainTextResponse:
    """The build log from byte ``offset``; ``X-Envstore-Log-Offset`` says where to go on from.

    With ``wait=S``, a running build whose log has nothing past ``offset`` is answered when
    the log grows or the build ends (or after S seconds)."""
    text, next_offset = svc.read_log(db, build_id, offset)
    return PlainTextResponse(text, headers={"X-Envstore-Log-Offset": str(next_offset)})


@router.get("/build/{build_id}/lockfile/", response_class=PlainTextResponse)
@router.get("/build/{build_id}/conda-lock.yaml", response_class=PlainTextResponse)
@router.get("/build/{build_id}/conda-lock.yml", response_class=PlainTextResponse)
def build_lockfile(db: DbSession, _who: Reader, state: State, build_id: Id) -> PlainTextResponse:
    return PlainTextResponse(
        artifact_bytes(db, state.blobs, build_id, "LOCKFILE"), media_type="text/yaml"
    )


@router.get("/build/{build_id}/yaml/", response_class=PlainTextResponse)
def build_yaml(db: DbSession, _who: Reader, state: State, build_id: Id) -> PlainTextResponse:
    data = artifact_bytes(db, state.blobs, build_id, "YAML")
    return PlainTextResponse(
        data,
        media_type="text/yaml",
        headers={"Content-Disposition": f'attachment; filename="build-{build_id}.yaml"'},
    )
