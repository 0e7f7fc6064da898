"""Read routes answered in one thread-pool hop, with an ETag.

A ``def`` route behind :func:`envstore.api.deps.Require` costs three hops of anyio's thread
pool per request: the permission check (a sync dependency), the route body, and closing the
session. Under load those hand-offs were a tenth of the server's CPU (benchmarks/README.md,
issue 11). A read route declared with :func:`Read` is ``async`` and hands one function to
:meth:`Reading.answer`, which in a single worker thread opens a session, identifies the caller,
checks the declared permission (before the body runs, as ``Require`` does), builds and
serialises the answer and closes the session.

Every such answer carries a strong ``ETag``: a digest of the caller's permission identity
(name and role bindings) and of the body's bytes, so it changes whenever what this caller
would be shown changes, and two callers who see different things never share one. A request
whose ``If-None-Match`` names it gets ``304 Not Modified`` with no body: the database is read,
but nothing is sent. The answers are ``Cache-Control: private, no-cache``
(a cache revalidates every time and shares nothing between users) and ``Vary`` on the headers
that identify the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from envstore.api.deps import AppState, On, check_permission, identify_caller
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.db.engine import discard, finish_read
from envstore.errors import Unavailable

__all__ = ["Read", "Reading", "entity_tag", "matches"]

_CACHING = {
    "Cache-Control": "private, no-cache",
    "Vary": "Authorization, Cookie",
}

_T = TypeVar("_T")

Render = Callable[[Session, Principal], Response]


def entity_tag(who: Principal, body: bytes) -> str:
    """A strong ETag for ``body`` as shown to ``who``: it covers the caller's permission
    identity, so a tag seen by one caller is never valid for another's view."""
    digest = hashlib.blake2b(digest_size=16)
    identity = (who.name, who.authenticated, who.bindings, who.limit)
    digest.update(repr(identity).encode())
    digest.update(b"\0")
    digest.update(body)
    return f'"{digest.hexdigest()}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = tag.removeprefix("W/")
    return any(part.strip().removeprefix("W/") == wanted for part in if_none_match.split(","))


@dataclass(frozen=True)
class Reading:
    """What a read route needs to answer: the request, the server, the declared permission."""

    request: Request
    state: AppState
    permission: Permission | None
    on: On

    async def answer(self, render: Render) -> Response:
        """``render(db, who)`` after the permission check, all in one worker thread."""
        return await anyio.to_thread.run_sync(self._answer, render)

    async def check(self) -> Principal:
        """Only identify the caller and check the permission (one hop): before a long poll."""
        return await anyio.to_thread.run_sync(self._in_session, lambda _db, who: who)

    def _answer(self, render: Render) -> Response:
        response, who = self._in_session(lambda db, who: (render(db, who), who))
        if response.status_code != 200:
            return response
        tag = entity_tag(who, bytes(response.body))
        headers = {"ETag": tag, **_CACHING}
        if matches(self.request.headers.get("if-none-match"), tag):
            return Response(status_code=304, headers=headers)
        response.headers.update(headers)
        return response

    def _in_session(self, work: Callable[[Session, Principal], _T]) -> _T:
        request, state = self.request, self.state
        db = state.factory()
        try:
            who = identify_caller(request, state, db)
            request.state.principal = who  # as Require does, for the error pages
            if self.permission is not None:
                check_permission(request, db, who, self.permission, self.on)
            result = work(db, who)
        except OperationalError as exc:
            discard(db)  # a connection lost meanwhile is dropped
            raise Unavailable(f"database unavailable: {exc.orig}") from exc
        except BaseException:
            discard(db)
            raise
        finish_read(db)  # keeps the connection's prepared statements (see finish_read)
        return result


def Read(permission: Permission | None, on: On) -> Any:
    """Declare the permission of a read route (as :func:`~envstore.api.deps.Require` does);
    the route gets a :class:`Reading` and answers through :meth:`Reading.answer`."""
    if (permission is None) != (on is On.PUBLIC):
        raise ValueError("a PUBLIC route declares no permission; every other route one")

    # One dependency with no sub-dependencies: each costs FastAPI a solving pass per request.
    async def reading(request: Request) -> Reading:
        return Reading(request, request.app.state.envstore, permission, on)

    reading.__envstore_permission__ = (permission, on)  # type: ignore[attr-defined]
    return Depends(reading)
