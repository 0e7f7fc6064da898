"""``POST /specification/``: submit a spec (parsed and validated here, built by a worker)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from fastapi import APIRouter

from envstore.api.deps import Caller, DbSession, State
from envstore.api.schemas import SpecificationCreate, ok
from envstore.services.submit import Submission, submit

router = APIRouter(tags=["specifications"])


@router.post("/specification/")
def create_specification(
    db: DbSession, who: Caller, state: State, body: SpecificationCreate
) -> dict[str, Any]:
    as_of = body.as_of
    if as_of is not None and as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    sub = Submission(
        text=body.specification,
        environment_name=body.environment_name or None,
        namespace=body.namespace or None,
        description=body.environment_description,
        is_lockfile=body.is_lockfile,
        as_of=as_of,
    )
    build = submit(db, who, sub, state.limits)
    if state.queue is not None:
        state.queue.notify(build.id)
    return ok({"build_id": build.id}, f"build {build.id} is {build.status}")
