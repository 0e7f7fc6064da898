"""API tokens: create (never wider than the caller), list, revoke, and resolve on each request.

Only the sha256 of a token is stored (A4). Resolution reads the token row on every request, so
a revocation or an expiry takes effect on the very next one (A3, A5). ``last_used_on`` is
written at most once a minute per token, to keep reads from turning into writes under load.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.auth.oauth import ExternalIdentity
from envstore.auth.tokens import hash_token, looks_like_token, new_token
from envstore.core.names import validate_name
from envstore.core.permissions import (
    RoleBinding,
    bindings_from_mapping,
    narrower_or_equal,
    parse_role,
    validate_pattern,
)
from envstore.db.models import ApiToken, User, utcnow
from envstore.errors import Forbidden, InvalidInput, NotFound
from envstore.services.access import anonymous, principal_for_user, signed_in
from envstore.services.audit import record
from envstore.services.users import sync_external_user
from envstore.settings import Settings

__all__ = [
    "TokenRequest",
    "create_token",
    "hub_user_token",
    "list_tokens",
    "parse_bindings",
    "principal_for_token",
    "revoke_token",
]

_LAST_USED_GRANULARITY = timedelta(seconds=60)


@dataclass(frozen=True)
class TokenRequest:
    name: str = ""
    primary_namespace: str | None = None
    expiration: datetime | None = None
    role_bindings: dict[str, list[str]] | None = None


def parse_bindings(raw: Any) -> tuple[RoleBinding, ...]:
    """``{"ns/env": ["viewer", ...]}`` (what the conda-store CLI sends) → bindings."""
    if not isinstance(raw, dict):
        raise InvalidInput("role_bindings must be an object {'namespace/env': [roles]}")
    out: list[RoleBinding] = []
    for pattern, roles in raw.items():
        if isinstance(roles, str):
            roles = [roles]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidInput(f"role_bindings[{pattern!r}] must be a list of role names")
        out.extend(RoleBinding(validate_pattern(str(pattern)), parse_role(r)) for r in roles)
    return tuple(sorted(set(out)))


def create_token(
    db: Session, settings: Settings, who: Principal, request: TokenRequest
) -> tuple[str, ApiToken]:
    """A new token for the caller; refused when it would be wider than the caller (A5)."""
    now = utcnow()
    longest = now + timedelta(seconds=settings.token_max_lifetime)
    expires = request.expiration or longest
    if expires.tzinfo is not None:
        expires = expires.replace(tzinfo=None) - (expires.utcoffset() or timedelta(0))
    if expires <= now:
        raise InvalidInput("the token's expiration is in the past")
    # A token never outlives the login or token that made it, nor the server's maximum.
    expires = min(expires, longest, who.expiration or longest)
    limit: tuple[RoleBinding, ...] | None = None
    if request.role_bindings is not None:
        limit = parse_bindings(request.role_bindings)
        if not narrower_or_equal(limit, who.bindings) or (
            who.limit is not None and not narrower_or_equal(limit, who.limit)
        ):
            raise Forbidden("requested role bindings are wider than the caller's own")
    elif who.limit is not None:
        limit = who.limit
    if not who.authenticated:
        limit = limit if limit is not None else who.bindings
    primary = validate_name(request.primary_namespace or who.primary_namespace, kind="namespace")
    secret = new_token()
    row = ApiToken(
        token_hash=hash_token(secret),
        user_id=who.user_id,
        name=request.name[:255],
        primary_namespace=primary,
        role_bindings=_dump(limit),
        created_on=now,
        expires_on=expires,
    )
    db.add(row)
    db.flush()
    # never the secret: the token's id, name and what it may do
    record(
        db,
        who,
        "token.create",
        target=f"token {row.id}",
        after={
            "id": row.id,
            "name": row.name,
            "primary_namespace": primary,
            "role_bindings": row.role_bindings,
            "expires_on": expires.isoformat(),
        },
    )
    db.commit()
    return secret, row


def hub_user_token(
    db: Session, settings: Settings, identity: ExternalIdentity
) -> tuple[str, ApiToken]:
    """A token for the hub user JupyterHub vouched for (``POST /jupyterhub/token/``).

    The user is created or updated as at a hub login; the token carries that user's own rights
    and lasts ``jupyterhub_token_lifetime`` (single-user servers renew it).
    """
    user = sync_external_user(db, identity, "jupyterhub")
    if user is None:
        raise Forbidden(f"user {identity.username!r} may not sign in through JupyterHub")
    who = principal_for_user(db, settings, user)
    expires = utcnow() + timedelta(seconds=settings.jupyterhub_token_lifetime)
    request = TokenRequest(name="jupyterhub single-user server", expiration=expires)
    return create_token(db, settings, who, request)


def _dump(bindings: tuple[RoleBinding, ...] | None) -> dict[str, Any] | None:
    if bindings is None:
        return None
    out: dict[str, list[str]] = {}
    for binding in bindings:
        out.setdefault(binding.pattern, []).append(binding.role.value)
    return out


def list_tokens(db: Session, who: Principal) -> list[ApiToken]:
    """The caller's live tokens (never the secrets: only hashes exist)."""
    if who.user_id is None:
        return []
    return list(
        db.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == who.user_id, ApiToken.revoked_on.is_(None))
            .order_by(ApiToken.id)
        )
    )


def revoke_token(db: Session, who: Principal, token_id: int) -> None:
    """Revoke one of the caller's tokens; someone else's answers like a missing one."""
    row = db.get(ApiToken, token_id)
    if row is None or row.revoked_on is not None or row.user_id is None:
        raise NotFound(f"token {token_id} not found")
    if row.user_id != who.user_id:
        raise NotFound(f"token {token_id} not found")
    row.revoked_on = utcnow()
    record(
        db, who, "token.revoke", target=f"token {row.id}", before={"id": row.id, "name": row.name}
    )
    db.commit()


_TOKEN = (
    select(
        ApiToken.id,
        ApiToken.user_id,
        ApiToken.primary_namespace,
        ApiToken.role_bindings,
        ApiToken.expires_on,
        ApiToken.last_used_on,
        ApiToken.revoked_on,
        User.name,
        User.is_admin,
        User.disabled,
    )
    .outerjoin(User, User.id == ApiToken.user_id)
    .where(ApiToken.token_hash == bindparam("token_hash"))
)


def principal_for_token(db: Session, settings: Settings, secret: str) -> Principal | None:
    """The principal a token stands for, or None if unknown, expired, revoked or disabled.

    This runs on every request with a token: one statement, built once, reads the token and
    its user, without ORM objects."""
    if not looks_like_token(secret):
        return None
    row = db.connection().execute(_TOKEN, {"token_hash": hash_token(secret)}).first()
    now = utcnow()
    if row is None or row.revoked_on is not None or row.expires_on <= now:
        return None
    if row.user_id is None:
        base = anonymous(settings)
    elif row.name is None or row.disabled:
        return None
    else:
        base = signed_in(db, settings, row.user_id, row.name, is_admin=row.is_admin)
    _touch(db, row.id, row.last_used_on, now)
    limit = bindings_from_mapping(row.role_bindings) if row.role_bindings is not None else None
    return Principal(
        name=base.name,
        primary_namespace=row.primary_namespace,
        authenticated=base.authenticated,
        bindings=base.bindings,
        limit=limit,
        groups=base.groups,
        user_id=base.user_id,
        token_id=row.id,
        expiration=row.expires_on,
    )


def _touch(db: Session, token_id: int, last_used_on: datetime | None, now: datetime) -> None:
    if last_used_on is not None and now - last_used_on < _LAST_USED_GRANULARITY:
        return
    db.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_on=now))
    db.commit()
