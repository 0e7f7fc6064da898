"""The audit log: every change made through envstore, with who, when, from where, what, and
the state before and after.

Services call :func:`record` inside the transaction of the change they make, so a change and its
record are committed together or not at all. Nothing updates or deletes an event: the log is
append-only for the application (there is no route or service that would).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.db.models import AuditEvent, utcnow
from envstore.services.access import visible
from envstore.services.common import Page, Paging, paginate

__all__ = ["AuditFilters", "list_events", "record"]

_MAX_VALUE_CHARS = 20_000


def record(
    db: Session,
    who: Principal | None,
    kind: str,
    *,
    namespace: str | None = None,
    environment: str | None = None,
    target: str = "",
    before: Any = None,
    after: Any = None,
) -> None:
    """Add one event to the session; the caller's commit writes it with the change itself.

    ``who`` is None for commands run on the server host (``envstore user add``)."""
    db.add(
        AuditEvent(
            occurred_on=utcnow(),
            actor=who.name if who is not None else "server-host",
            address=who.address if who is not None else None,
            kind=kind,
            namespace=namespace,
            environment=environment,
            target=target[:255],
            before=_bounded(before),
            after=_bounded(after),
        )
    )


def _bounded(value: Any) -> Any:
    # A spec of 256 KiB must not make every audit row as big: keep a marker instead.
    if isinstance(value, str) and len(value) > _MAX_VALUE_CHARS:
        return value[:_MAX_VALUE_CHARS] + "... [truncated]"
    return value


@dataclass(frozen=True)
class AuditFilters:
    namespace: str | None = None
    environment: str | None = None
    actor: str | None = None
    kind: str | None = None  # exact kind, or a prefix ending in '.' ("environment.")
    since: datetime | None = None
    until: datetime | None = None


def list_events(
    db: Session, who: Principal, filters: AuditFilters, paging: Paging
) -> Page[AuditEvent]:
    """Events the caller administers, oldest first (``order=desc`` for newest first).

    Events of a namespace are shown to its admins; events without one (users, tokens, global
    settings) only to administrators of everything."""
    scope = visible(db, who, Permission.AUDIT_READ, func.coalesce(AuditEvent.namespace, ""))
    if who.can_everywhere(Permission.AUDIT_READ):
        scope = or_(scope, AuditEvent.namespace.is_(None))
    query = select(AuditEvent).where(scope)
    if filters.namespace:
        query = query.where(AuditEvent.namespace == filters.namespace)
    if filters.environment:
        query = query.where(AuditEvent.environment == filters.environment)
    if filters.actor:
        query = query.where(AuditEvent.actor == filters.actor)
    if filters.kind:
        if filters.kind.endswith("."):
            query = query.where(AuditEvent.kind.startswith(filters.kind))
        else:
            query = query.where(AuditEvent.kind == filters.kind)
    if filters.since:
        query = query.where(AuditEvent.occurred_on >= filters.since)
    if filters.until:
        query = query.where(AuditEvent.occurred_on < filters.until)
    sortable = {"id": AuditEvent.id, "occurred_on": AuditEvent.occurred_on}
    return paginate(db, query, paging, sortable, AuditEvent.id)
