"""``POST /specification/``: submit a spec (parsed and validated here, built by a worker).

``GET /specification/``: solve only, no build (in a bounded child process, see
:mod:`envstore.services.solve`); answered without the envelope, as conda-store does.
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Query

from envstore.api.deps import AuthorizedBody, DbSession, On, Require, State
from envstore.api.schemas import JSONBody, SpecificationCreate, ok
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.errors import Forbidden
from envstore.services.solve import SolveQuery, solve_specification
from envstore.services.submit import Submission, check_submit_quota, submit

router = APIRouter(tags=["specifications"])


# The body is read by AuthorizedBody (after the permission check), so OpenAPI is told here.
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SpecificationCreate.model_json_schema()}},
    }
}


@router.post("/specification/", openapi_extra=_BODY_DOC)
def create_specification(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_CREATE, On.ANY)],
    state: State,
    body: Annotated[
        SpecificationCreate, AuthorizedBody(SpecificationCreate, Permission.ENV_CREATE, On.ANY)
    ],
) -> JSONBody:
    """Submit a spec (I5: authorised before the body is read, and before the spec is parsed).

    The target namespace is inside the body, so the check is in three steps: the caller must
    hold ``environment:create`` on some pattern before the body is read at all (most refusals
    stop here, before one byte of the body is decoded); then on some environment of the named
    namespace, before the spec text is parsed; then, in the service, on the exact
    ``namespace/name`` once the name is known (it may come from the spec itself).
    """
    if not who.can_in_namespace(Permission.ENV_CREATE, body.namespace or who.primary_namespace):
        raise Forbidden()
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
    check_submit_quota(db, who, state.settings.submit_quota_per_minute)
    submitted = submit(
        db, who, sub, state.limits, state.policy_inputs, state.settings.channel_rules
    )
    build_id = submitted.build.id
    if submitted.created:
        state.wake_workers(build_id)
    # ``unchanged``: an addition to conda-store's answer, so clients need not guess whether
    # the build they got back is a new one.
    data = {"build_id": build_id, "unchanged": not submitted.created}
    return ok(data, submitted.message)


@router.get("/specification/")
def solve_only(
    db: DbSession,
    who: Annotated[Principal, Require(Permission.ENV_CREATE, On.ANY)],
    state: State,
    channel: Annotated[list[str] | None, Query()] = None,
    channels: Annotated[list[str] | None, Query()] = None,  # what the conda-store CLI sends
    conda: Annotated[list[str] | None, Query()] = None,
    pip: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    query = SolveQuery(
        channels=[c for c in [*(channel or []), *(channels or [])] if c],
        conda=[c for c in conda or [] if c],
        pip=[p for p in pip or [] if p],
    )
    return {"solve": solve_specification(db, state.settings, query, state.limits)}
