"""The web UI's governance pages: the policy in force at a level (merged settings with where
each value comes from, their change history, and the current environments that break it),
and the audit log.

Both read through the services of ``/setting/``, ``/policy/check/`` and ``/audit/`` with the
same permission checks: the services check the level or filter the rows themselves, so a
page shows exactly what the API would answer the same caller.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from envstore.api.deps import DbSession, On, Require, State
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.core.policy_settings import KEYS, Level
from envstore.errors import InvalidInput
from envstore.services import settings as settings_svc
from envstore.services.audit import AuditFilters, list_events
from envstore.services.common import Paging
from envstore.services.policy import check_environments
from envstore.ui.render import page

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
) -> HTMLResponse:
    """The merged settings of a level, its history (newest first) and what breaks them now."""
    namespace, environment = namespace.strip(), environment.strip()
    if environment and not namespace:
        raise InvalidInput("an environment's settings need its namespace: give both")
    # The level's permission first (as the API's Require does before it loads anything), so a
    # namespace the caller may not read is refused the same whether or not it exists.
    view = settings_svc.read_settings(db, who, Level(namespace, environment))
    level = settings_svc.resolve_level(db, namespace or None, environment or None)
    history = settings_svc.setting_history(
        db, who, level, Paging(page_number, PAGE_SIZE, ("id",), "desc")
    )
    checked, broken = check_environments(
        db,
        state.blobs,
        who,
        namespace=namespace or None,
        environment=environment or None,
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
        "namespace": namespace,
        "environment": environment,
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
    }
    return page(request, who, "policy.html", context, active="policy")


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
