"""``/audit/``: the audit log, for administrators (append-only: there is no write route).

Filters: ``namespace``, ``environment``, ``actor``, ``kind`` (exact, or a prefix ending in
``.``: ``environment.``), ``since`` and ``until`` (ISO datetimes, UTC); paged, oldest first
(``order=desc`` for newest first).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter

from envstore.api.deps import DbSession, On, PageQuery, Require
from envstore.api.schemas import JSONBody, ok_page, ts
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.db.models import AuditEvent
from envstore.services.audit import AuditFilters, list_events

router = APIRouter(tags=["audit"])


def event_out(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_on": ts(event.occurred_on),
        "actor": event.actor,
        "address": event.address,
        "kind": event.kind,
        "namespace": event.namespace,
        "environment": event.environment,
        "target": event.target,
        "before": event.before,
        "after": event.after,
    }


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


@router.get("/audit/")
def list_audit(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.AUDIT_READ, On.ANY)],
    paging: PageQuery,
    namespace: str | None = None,
    environment: str | None = None,
    actor: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> JSONBody:
    filters = AuditFilters(
        namespace or None,
        environment or None,
        actor or None,
        kind or None,
        _utc(since),
        _utc(until),
    )
    page = list_events(db, who, filters, paging)
    return ok_page(page, [event_out(e) for e in page.items])
