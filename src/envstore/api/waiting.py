"""Long polls on a build: ``?wait=S`` on ``GET /build/{id}/`` and ``GET /build/{id}/logs/``.

A client following a build (``envstore env create --wait``) used to poll twice a second, so a
build that took 0.1 s was reported after up to 0.5 s, and each poll cost the server a request.
With ``wait``, the request itself waits, on the event loop (no thread, no database connection
held), until the build changes: the workers of this process wake it at once
(:class:`envstore.jobs.events.BuildEvents`), and it reads the build again every
``POLL_SECONDS`` in case the change came from elsewhere (a worker on another host, a cancel
through another server). At most ``max_long_polls`` requests wait at a time; beyond that a
request is answered at once, as without ``wait``, which every client must handle anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from envstore.api.deps import AppState, DbSession, State
from envstore.api.params import MAX_OFFSET, Id
from envstore.core.builds import TERMINAL, ArtifactStatus, BuildStatus
from envstore.db.engine import session_scope
from envstore.services.packing import artifact_state
from envstore.services.progress import build_progress

__all__ = [
    "MAX_ARTIFACT_WAIT_SECONDS",
    "MAX_WAIT_SECONDS",
    "ArtifactWait",
    "LogWait",
    "WaitQuery",
    "wait_for_artifacts",
    "wait_for_build",
]

MAX_WAIT_SECONDS = 30.0
MAX_ARTIFACT_WAIT_SECONDS = 300.0
POLL_SECONDS = 1.0

WaitQuery = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="seconds to wait, while the build runs, for it to change before answering",
    ),
]


def _progress(state: AppState, build_id: int) -> tuple[BuildStatus, int]:
    with session_scope(state.factory) as db:
        return build_progress(db, build_id)


async def wait_for_build(
    state: AppState, build_id: int, wait: float, log_offset: int | None = None
) -> None:
    """Return once the build has ended, or has changed, or ``wait`` seconds have passed.

    Changed means: its log has grown past ``log_offset`` when one is given, else its status
    is no longer the one it had when the wait began. Raises NotFound when the build is gone.
    """
    if wait <= 0 or not state.take_long_poll():
        return
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        first: BuildStatus | None = None
        while True:
            # Subscribe before reading: a change between the read and the wait still wakes us.
            woken = state.events.subscribe(build_id, log=log_offset is not None)
            try:
                status, size = await run_in_threadpool(_progress, state, build_id)
                first = first or status
                grew = size > log_offset if log_offset is not None else status != first
                left = deadline - loop.time()
                if status in TERMINAL or grew or left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken, min(left, POLL_SECONDS))
            finally:
                state.events.unsubscribe(build_id, woken)
    finally:
        state.release_long_poll()


async def _end_transaction(db: Session) -> None:
    """Give the request's connection back while it waits, and let the answer read afresh
    (a transaction begun before the wait would still see the build as it was)."""
    await run_in_threadpool(db.rollback)


async def until_log_grows(
    state: State,
    db: DbSession,
    build_id: Id,
    wait: WaitQuery = 0,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> None:
    """Dependency of ``GET /build/{id}/logs/``: declared after the permission check."""
    if wait > 0:
        await _end_transaction(db)
        await wait_for_build(state, build_id, wait, log_offset=offset)


def _artifacts_pending(state: AppState, build_id: int) -> bool:
    with session_scope(state.factory) as db:
        found = artifact_state(db, build_id)
    return found is not None and found[0] in (ArtifactStatus.QUEUED, ArtifactStatus.PACKING)


async def wait_for_artifacts(state: AppState, build_id: int, wait: float) -> None:
    """Return once the build's pack job has ended (or it has none), or after ``wait`` s."""
    if wait <= 0 or not state.take_long_poll():
        return
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            woken = state.events.subscribe(build_id)
            try:
                pending = await run_in_threadpool(_artifacts_pending, state, build_id)
                left = deadline - loop.time()
                if not pending or left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken, min(left, POLL_SECONDS))
            finally:
                state.events.unsubscribe(build_id, woken)
    finally:
        state.release_long_poll()


async def until_artifacts_ready(
    state: State,
    db: DbSession,
    build_id: int,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_ARTIFACT_WAIT_SECONDS,
            description="seconds to wait for an archive or image still being made "
            "(default artifact_wait_seconds)",
        ),
    ] = None,
) -> None:
    """Dependency of ``archive/`` and ``docker/``: a client that asks for them the moment the
    build completes (the conda-store CLI's ``run`` does) gets them when they are made,
    instead of a 404, for up to ``wait`` seconds."""
    seconds = state.settings.artifact_wait_seconds if wait is None else wait
    if seconds > 0 and await run_in_threadpool(_artifacts_pending, state, build_id):
        await _end_transaction(db)
        await wait_for_artifacts(state, build_id, seconds)


ArtifactWait = Annotated[None, Depends(until_artifacts_ready)]
LogWait = Annotated[None, Depends(until_log_grows)]
