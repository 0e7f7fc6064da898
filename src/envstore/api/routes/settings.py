"""``/setting/``: policy settings per level (global, ``{namespace}``, ``{namespace}/{name}``),
and ``/policy/check/``: the current environments that the policy now in force would refuse.

GET answers the settings merged down to the level (``data``, as conda-store does), what the
level itself stores (``set_here``) and where each merged value came from (``sources``); with
``history=true`` it answers the level's change history instead. PUT takes ``{key: value}``
(``null`` unsets a key at this level).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from envstore.api.deps import DbSession, On, PageQuery, Require, State
from envstore.api.schemas import JSONBody, ok, ok_page, ts
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.db.models import SettingChange
from envstore.services import settings as svc
from envstore.services.common import Paging
from envstore.services.policy import check_environments

router = APIRouter(tags=["settings"])

P = Permission
Changes = Annotated[dict[str, Any], Body(description="{setting: value}; null unsets it")]


def _view(view: svc.SettingsView, message: str | None = None) -> JSONBody:
    return JSONBody(
        {
            "status": "ok",
            "data": view.merged,
            "message": message,
            "level": view.level.label,
            "set_here": view.set_here,
            "sources": view.sources,
        }
    )


def _change_out(row: SettingChange) -> dict[str, Any]:
    return {
        "id": row.id,
        "key": row.key,
        "old_value": row.old_value,
        "new_value": row.new_value,
        "changed_by": row.changed_by,
        "changed_on": ts(row.changed_on),
    }


def _read(
    db: DbSession, who: Principal, ns: str | None, env: str | None, history: bool, paging: Paging
) -> JSONBody:
    level = svc.resolve_level(db, ns, env)
    if history:
        page = svc.setting_history(db, who, level, paging)
        return ok_page(page, [_change_out(row) for row in page.items])
    return _view(svc.read_settings(db, who, level))


def _write(
    db: DbSession, who: Principal, ns: str | None, env: str | None, body: Changes
) -> JSONBody:
    level = svc.resolve_level(db, ns, env)
    view = svc.update_settings(db, who, level, body)
    return _view(view, f"{level.label} settings {sorted(body)} updated")


@router.get("/setting/")
def get_global(
    db: DbSession,
    who: Annotated[Principal, Require(P.SETTING_READ, On.ANY)],
    paging: PageQuery,
    history: bool = False,
) -> JSONBody:
    return _read(db, who, None, None, history, paging)


@router.put("/setting/")
def put_global(
    db: DbSession,
    who: Annotated[Principal, Require(P.SETTING_UPDATE, On.EVERYWHERE)],
    body: Changes,
) -> JSONBody:
    return _write(db, who, None, None, body)


@router.get("/setting/{namespace}/")
def get_namespace_settings(
    db: DbSession,
    who: Annotated[Principal, Require(P.SETTING_READ, On.NAMESPACE)],
    paging: PageQuery,
    namespace: str,
    history: bool = False,
) -> JSONBody:
    return _read(db, who, namespace, None, history, paging)


@router.put("/setting/{namespace}/")
def put_namespace_settings(
    db: DbSession,
    who: Annotated[Principal, Require(P.SETTING_UPDATE, On.NAMESPACE)],
    namespace: str,
    body: Changes,
) -> JSONBody:
    return _write(db, who, namespace, None, body)


@router.get("/setting/{namespace}/{name}/")
def get_environment_settings(
    db: DbSession,
    who: Annotated[Principal, Require(P.SETTING_READ, On.ENVIRONMENT)],
    paging: PageQuery,
    namespace: str,
    name: str,
    history: bool = False,
) -> JSONBody:
    return _read(db, who, namespace, name, history, paging)


@router.put("/setting/{namespace}/{name}/")
def put_environment_settings(
    db: DbSession,
    who: Annotated[Principal, Require(P.SETTING_UPDATE, On.ENVIRONMENT)],
    namespace: str,
    name: str,
    body: Changes,
) -> JSONBody:
    return _write(db, who, namespace, name, body)


@router.get("/policy/check/")
def policy_check(
    db: DbSession,
    who: Annotated[Principal, Require(P.ENV_READ, On.LIST)],
    state: State,
    namespace: str | None = None,
    environment: str | None = None,
) -> JSONBody:
    """Current environments (that the caller may read) the policy in force now would refuse."""
    checked, found = check_environments(
        db,
        state.blobs,
        who,
        namespace=namespace or None,
        environment=environment or None,
        channel_alias=state.settings.channel_alias,
        index_url=state.policy_inputs.index_url,
    )
    return ok(
        found,
        f"{len(found)} of {checked} environment(s) break the policy in force"
        if found
        else f"all {checked} environment(s) comply with the policy in force",
    )
