"""The read pages of the web UI: the list of environments, one environment (packages, history,
diff of two builds, downloads, commands) and one build with its log.

Every page declares its permission with the API's own ``Require`` and reads through the same
services as the API's read routes, so a page shows exactly what the API would answer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from envstore.api.deps import DbSession, On, Require, State
from envstore.auth import Principal
from envstore.core.builds import TERMINAL
from envstore.core.permissions import Permission
from envstore.errors import EnvstoreError
from envstore.services import builds as build_svc
from envstore.services import environments as env_svc
from envstore.services.access import build_owner
from envstore.services.common import Paging
from envstore.services.diff import diff_builds
from envstore.services.views import BuildView, EnvironmentView, PackageView, newest_builds
from envstore.ui.render import page

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
_MAX_PACKAGE_PAGES = 50  # 5000 packages: far beyond any real environment


@router.get("/")
def environments(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_READ, On.LIST)],
    q: Annotated[str, Query(max_length=200)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """Every environment the caller may read, the caller's own namespace first."""
    paging = Paging(page_number, PAGE_SIZE, ("own", "namespace", "name"))
    filters = env_svc.EnvFilters(search=q.strip() or None)
    found = env_svc.list_environments(db, filters, paging, who, own_first=True)
    counts = build_svc.package_counts(
        db, [env.current_build_id for env in found.items if env.current_build_id is not None]
    )
    newest = newest_builds(db, [env.id for env in found.items])
    groups: list[tuple[str, list[EnvironmentView]]] = []
    for env in found.items:
        if not groups or groups[-1][0] != env.namespace:
            groups.append((env.namespace, []))
        groups[-1][1].append(env)
    pages = max(1, -(-found.count // PAGE_SIZE))
    context = {
        "groups": groups,
        "counts": counts,
        "newest": newest,
        "q": q,
        "count": found.count,
        "page_number": page_number,
        "pages": pages,
        "own": who.primary_namespace if who.authenticated else None,
    }
    return page(request, who, "environments.html", context, active="environments")


def _all_packages(db: Session, build_id: int) -> list[tuple[PackageView, bool]]:
    out: list[tuple[PackageView, bool]] = []
    for number in range(1, _MAX_PACKAGE_PAGES + 1):
        found = build_svc.build_packages(db, build_id, Paging(number, 100, ("name",)))
        out.extend(found.items)
        if len(out) >= found.count or not found.items:
            break
    return out


_NAME_END = re.compile(r"[\s=<>!~\[;@(]")


def _asked_for(spec: dict[str, Any]) -> dict[tuple[str, str], str]:
    """What the spec asked for, by ``(manager, package name)``: ``liba <2``, ``six==1.16``."""
    asked: dict[tuple[str, str], str] = {}

    def add(manager: str, text: str) -> None:
        name = _NAME_END.split(text.split("::")[-1].strip(), maxsplit=1)[0]
        asked[(manager, name.lower().replace("_", "-"))] = text.strip()

    for dep in spec.get("dependencies") or []:
        if isinstance(dep, str):
            add("conda", dep)
        elif isinstance(dep, dict):
            for pip in dep.get("pip") or []:
                add("pip", str(pip))
    return asked


def _diff(
    db: Session, namespace: str, name: str, old: int | None, new: int | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The diff of two builds of this environment, or the message saying why not."""
    if old is None or new is None:
        return None, None
    for build_id in (old, new):
        # Only builds of the environment on the page: its read permission covers them.
        if build_owner(db, build_id) != (namespace, name):
            return None, f"build {build_id} is not a build of {namespace}/{name}"
    try:
        return diff_builds(db, old, new), None
    except EnvstoreError as exc:
        return None, exc.message


@router.get("/env/{namespace}/{name}/")
def environment(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_READ, On.ENVIRONMENT)],
    state: State,
    namespace: str,
    name: str,
    old: Annotated[int | None, Query(alias="from", ge=1)] = None,
    new: Annotated[int | None, Query(alias="to", ge=1)] = None,
    notice: Annotated[str, Query(max_length=300)] = "",
) -> HTMLResponse:
    env = env_svc.load_environment(db, namespace, name)
    current = build_svc.load_build(db, env.current_build_id) if env.current_build_id else None
    history = build_svc.list_builds(
        db,
        build_svc.BuildFilters(environment_id=env.id),
        Paging(1, 100, ("id",), "desc"),
        who,
    )
    packages = _all_packages(db, current.id) if current is not None else []
    completed = [b for b in history.items if b.status == "COMPLETED"]
    if old is None and new is None and request.query_params.get("compare") is None:
        diff, diff_error = None, None
    else:
        diff, diff_error = _diff(db, namespace, name, old, new)
    registry = request.headers.get("host", "localhost")
    context = {
        "env": env,
        "current": current,
        "history": history.items,
        "history_count": history.count,
        "completed": completed,
        "requested": [p for p, wanted in packages if wanted],
        "asked": _asked_for(current.specification.spec) if current is not None else {},
        "dependencies": [p for p, wanted in packages if not wanted],
        "diff": diff,
        "diff_error": diff_error,
        "old": old,
        "new": new,
        "can_update": who.can(Permission.ENV_UPDATE, namespace, name),
        "can_create": who.can(Permission.ENV_CREATE, namespace, name),
        "registry": registry,
        "secure": state.settings.cookie_secure,
        "notice": notice,
        "artifact_types": {a.artifact_type for a in current.artifacts} if current else set(),
    }
    return page(request, who, "environment.html", context, active="environments")


@router.get("/build/{build_id}/")
def build(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_READ, On.BUILD)],
    build_id: int,
) -> HTMLResponse:
    """One build, its log, and (while it runs) the live view the page script keeps up."""
    found: BuildView = build_svc.load_build(db, build_id)
    log, offset = build_svc.read_log(db, build_id)
    env = env_svc.load_environment(db, found.namespace, found.environment)
    context = {
        "build": found,
        "log": log,
        "offset": offset,
        "finished": found.status in {s.value for s in TERMINAL},
        "is_current": env.current_build_id == found.id,
        "can_update": who.can(Permission.ENV_UPDATE, found.namespace, found.environment),
        "artifact_types": {a.artifact_type for a in found.artifacts},
    }
    return page(request, who, "build.html", context, active="environments")
