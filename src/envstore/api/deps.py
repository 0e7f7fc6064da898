"""Request dependencies: the database session, the caller, the server's state, paging.

Routes declare what they need with ``Annotated`` aliases (``db: DbSession, who: Caller``).
Authentication plugs in behind :func:`get_principal` without touching routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from envstore.auth import LOCAL_PRINCIPAL, Principal
from envstore.core.specs import SpecLimits
from envstore.errors import Unavailable
from envstore.jobs import Queue
from envstore.services.common import MAX_PAGE_SIZE, Paging
from envstore.settings import Settings
from envstore.storage import LocalBlobStore, StoreLayout

__all__ = ["AppState", "Caller", "DbSession", "PageQuery", "State", "get_principal"]


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    blobs: LocalBlobStore
    layout: StoreLayout
    queue: Queue | None

    @property
    def limits(self) -> SpecLimits:
        s = self.settings
        return SpecLimits(s.max_spec_bytes, s.max_packages, s.max_yaml_depth, s.max_yaml_aliases)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.envstore
    return state


State = Annotated[AppState, Depends(get_state)]


def get_db(state: State) -> Iterator[Session]:
    session = state.factory()
    try:
        yield session
    except OperationalError as exc:
        session.rollback()
        raise Unavailable(f"database unavailable: {exc.orig}") from exc
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db)]


def get_principal() -> Principal:
    """The caller. Until authentication lands, every caller is the one trusted local user."""
    return LOCAL_PRINCIPAL


Caller = Annotated[Principal, Depends(get_principal)]


def get_paging(
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(ge=1)] = MAX_PAGE_SIZE,
    sort_by: Annotated[list[str] | None, Query()] = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> Paging:
    return Paging(
        page=page, size=min(size, MAX_PAGE_SIZE), sort_by=tuple(sort_by or ()), order=order
    )


PageQuery = Annotated[Paging, Depends(get_paging)]
