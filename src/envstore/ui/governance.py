"""The web UI's governance pages: the policy in force at a level (merged settings with where
each value comes from, their change history, and the current environments that break it;
its admins change one key at a time in a form with the CSRF token), and the audit log.

Both read through the services of ``/setting/``, ``/policy/check/`` and ``/audit/`` with the
same permission checks: the services check the level or filter the rows themselves, so a
page shows exactly what the API would answer the same caller.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from envstore.api.deps import AppState, DbSession, On, Require, State
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.core.policy_settings import KEYS, Level
from envstore.errors import Conflict, Forbidden, InvalidInput
from envstore.services import settings as settings_svc
from envstore.services.audit import AuditFilters, list_events
from envstore.services.common import Paging
from envstore.services.policy import check_environments
from envstore.ui.forms import Form
from envstore.ui.render import check_csrf, page, redirect

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
_MAX_PAGE = 100_000
Name = Annotated[str, Query(max_length=255)]
PageNumber = Annotated[int, Query(alias="page", ge=1, le=_MAX_PAGE)]


def shown(value: Any) -> str:
    """A setting's or event's value as compact JSON (text as it is)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _pages(count: int) -> int:
    return max(1, -(-count // PAGE_SIZE))


@router.get("/policy/")
def policy(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.SETTING_READ, On.ANY)],
    state: State,
    namespace: Name = "",
    environment: Name = "",
    page_number: PageNumber = 1,
    notice: Annotated[str, Query(max_length=300)] = "",
) -> HTMLResponse:
    """The merged settings of a level, its history (newest first) and what breaks them now."""
    level = _level(db, who, namespace.strip(), environment.strip(), Permission.SETTING_READ)
    return _policy_page(request, db, who, state, level, page_number, notice=notice)


def _level(
    db: DbSession, who: Principal, namespace: str, environment: str, permission: Permission
) -> Level:
    """The level named by the query or form; the caller's right on it is checked before its
    existence (as the API's Require does), so another namespace is refused the same whether
    it exists or not."""
    if environment and not namespace:
        raise InvalidInput("an environment's settings need its namespace: give both")
    wanted = Level(namespace, environment)
    if permission is Permission.SETTING_UPDATE:
        if not _can_update(who, wanted):
            raise Forbidden()
    else:
        settings_svc.read_settings(db, who, wanted)
    return settings_svc.resolve_level(db, namespace or None, environment or None)


def _policy_page(
    request: Request,
    db: DbSession,
    who: Principal,
    state: AppState,
    level: Level,
    page_number: int = 1,
    *,
    notice: str = "",
    error: str = "",
    form: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    view = settings_svc.read_settings(db, who, level)
    history = settings_svc.setting_history(
        db, who, level, Paging(page_number, PAGE_SIZE, ("id",), "desc")
    )
    checked, broken = check_environments(
        db,
        state.blobs,
        who,
        namespace=level.namespace or None,
        environment=level.environment or None,
        channel_alias=state.settings.channel_alias,
        index_url=state.policy_inputs.index_url,
    )
    rows = [
        {
            "key": key,
            "meaning": info.meaning,
            "merge": info.merge,
            "value": view.merged.get(key),
            "sources": view.sources.get(key),
            "here": key in view.set_here,
        }
        for key, info in KEYS.items()
    ]
    context = {
        "level": level,
        "namespace": level.namespace,
        "environment": level.environment,
        "rows": rows,
        "set_count": sum(1 for row in rows if row["sources"]),
        "history": history.items,
        "history_count": history.count,
        "page_number": page_number,
        "pages": _pages(history.count),
        "checked": checked,
        "broken": broken,
        "shown": shown,
        "can_update": _can_update(who, level),
        "keys": [k for k, info in KEYS.items() if level.is_global or not info.global_only],
        "notice": notice,
        "error": error,
        "form": form or {},
    }
    return page(request, who, "policy.html", context, status=status, active="policy")


def _form_value(text: str) -> Any:
    """A value typed in the form: JSON when it reads as JSON, text otherwise (as the CLI's
    ``settings set``); nothing at all unsets the key at this level."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@router.post("/policy/")
def change_policy(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.SETTING_UPDATE, On.ANY)],
    state: State,
    form: Form,
) -> Response:
    """Set or unset one key at a level (its admins only); a refused value is shown on the
    page with what was typed, for another try."""
    check_csrf(request, form)
    namespace, environment = form.get("namespace", "").strip(), form.get("environment", "").strip()
    if len(namespace) > 255 or len(environment) > 255:
        raise InvalidInput("namespace and environment names are at most 255 characters")
    level = _level(db, who, namespace, environment, Permission.SETTING_UPDATE)
    key = form.get("key", "").strip()
    try:
        if key not in KEYS:
            raise InvalidInput(f"choose a setting to change, not {key[:60]!r}")
        value = _form_value(form.get("value", ""))
        settings_svc.update_settings(db, who, level, {key: value})
    except (InvalidInput, Conflict) as exc:
        db.rollback()
        status = 409 if isinstance(exc, Conflict) else 400
        return _policy_page(
            request, db, who, state, level, error=exc.message, form=form, status=status
        )
    done = "unset" if value is None else "set"
    return redirect(
        request,
        "/policy/",
        namespace=namespace,
        environment=environment,
        notice=f"{key} {done} at the {level.label} level.",
    )


def _can_update(who: Principal, level: Level) -> bool:
    if level.is_global:
        return who.can_everywhere(Permission.SETTING_UPDATE)
    return who.can(Permission.SETTING_UPDATE, level.namespace, level.environment or "*")


def _instant(text: str, field: str) -> datetime | None:
    """An ISO date or datetime from a filter field (UTC when it names no zone)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO date or date and time (2026-11-01 or 2026-11-01T08:30), "
            f"not {text[:40]!r}"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@router.get("/audit/")
def audit(
    request: Request,
    db: DbSession,
    who: Annotated[Principal, Require(Permission.AUDIT_READ, On.ANY)],
    namespace: Name = "",
    environment: Name = "",
    actor: Name = "",
    kind: Annotated[str, Query(max_length=100)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    page_number: PageNumber = 1,
) -> HTMLResponse:
    """The events the caller administers, newest first, filtered and paged."""
    filters = AuditFilters(
        namespace.strip() or None,
        environment.strip() or None,
        actor.strip() or None,
        kind.strip() or None,
        _instant(since, "since"),
        _instant(until, "until"),
    )
    if filters.since and filters.until and filters.since >= filters.until:
        raise InvalidInput("since must be before until")
    found = list_events(db, who, filters, Paging(page_number, PAGE_SIZE, ("id",), "desc"))
    query = {
        "namespace": namespace,
        "environment": environment,
        "actor": actor,
        "kind": kind,
        "since": since,
        "until": until,
    }
    context = {
        "events": found.items,
        "count": found.count,
        "page_number": page_number,
        "pages": _pages(found.count),
        "query": query,
        "filtered": any(value.strip() for value in query.values()),
        "shown": shown,
    }
    return page(request, who, "audit.html", context, active="audit")
