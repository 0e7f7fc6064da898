"""``/token/``: create an API token (never wider than the caller), list and revoke one's own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from envstore.api.deps import DbSession, On, Require, State
from envstore.api.params import Id
from envstore.api.schemas import JSONBody, ok, ts
from envstore.auth import Principal
from envstore.auth.oauth import hub_token_identity
from envstore.db.models import ApiToken
from envstore.errors import NotFound
from envstore.services import tokens as svc

router = APIRouter(tags=["tokens"])

Anyone = Annotated[Principal, Require(None, On.PUBLIC)]


class TokenCreate(BaseModel):
    name: str = Field(default="", max_length=255)
    primary_namespace: str | None = None
    expiration: datetime | int | None = Field(default=None, description="ISO date or Unix time")
    exp: datetime | int | None = Field(default=None, description="what the conda-store CLI sends")
    role_bindings: dict[str, list[str]] | None = None


def _when(value: datetime | int | None) -> datetime | None:
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    return value


def token_out(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "primary_namespace": row.primary_namespace,
        "role_bindings": row.role_bindings,
        "created_on": ts(row.created_on),
        "expiration": ts(row.expires_on),
        "last_used": ts(row.last_used_on),
    }


@router.post("/token/")
def create_token(
    db: DbSession, who: Anyone, state: State, body: Annotated[TokenCreate | None, Body()] = None
) -> JSONBody:
    """A new token; anonymous callers get one with the anonymous bindings (API.md)."""
    body = body or TokenCreate()
    request = svc.TokenRequest(
        name=body.name,
        primary_namespace=body.primary_namespace or None,
        expiration=_when(body.expiration if body.expiration is not None else body.exp),
        role_bindings=body.role_bindings,
    )
    secret, row = svc.create_token(db, state.settings, who, request)
    return ok({"token": secret, **token_out(row)}, "keep this token: it is shown only once")


class HubTokenExchange(BaseModel):
    hub_token: str = Field(min_length=1, max_length=4096)


@router.post("/jupyterhub/token/")
def hub_token_exchange(
    db: DbSession, _who: Anyone, state: State, body: HubTokenExchange
) -> JSONBody:
    """Trade a JupyterHub user's API token for an envstore token of that user (docs/jupyter.md).

    What a single-user server does at start, so hub users never copy a token by hand.
    """
    settings = state.settings
    if settings.oauth_provider != "jupyterhub":
        raise NotFound("this envstore does not use JupyterHub (ENVSTORE_OAUTH_PROVIDER)")
    identity = hub_token_identity(
        settings.resolved_jupyterhub_api_url, body.hub_token, settings.jupyterhub_service_name
    )
    secret, row = svc.hub_user_token(db, settings, identity)
    return ok({"token": secret, **token_out(row)}, "token for the hub user")


@router.get("/token/")
def list_tokens(db: DbSession, who: Anyone) -> JSONBody:
    return ok([token_out(row) for row in svc.list_tokens(db, who)])


@router.delete("/token/{token_id}/")
def revoke_token(db: DbSession, who: Anyone, token_id: Id) -> dict[str, Any]:
    svc.revoke_token(db, who, token_id)
    return {"status": "ok", "message": f"token {token_id} revoked"}
