"""Browser login sessions (A11): recorded server-side, checked on every cookie request.

The cookie carries a random session secret; the database keeps only its sha256 in
``login_session``. A session ends when its row goes: at logout (that session), at a password
change or when the user is disabled (all of the user's sessions), or when it expires. The check
is the one statement that already had to run on every cookie request (is the user still
enabled?), now joined with the session row: no extra query and no cache, so a revoked session
fails at the very next request.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.auth.tokens import hash_token
from envstore.db.models import LoginSession, User, utcnow
from envstore.services.access import signed_in
from envstore.settings import Settings

__all__ = ["end_session", "end_user_sessions", "principal_for_session", "start_session"]


def start_session(db: Session, settings: Settings, user_id: int) -> str:
    """Record a new session of ``user_id`` and return its secret (for the cookie only).

    The user's expired sessions are deleted on the way, so the table stays as small as the
    number of live sign-ins."""
    now = utcnow()
    db.execute(
        delete(LoginSession).where(LoginSession.user_id == user_id, LoginSession.expires_on <= now)
    )
    secret = secrets.token_urlsafe(32)
    db.add(
        LoginSession(
            session_hash=hash_token(secret),
            user_id=user_id,
            created_on=now,
            expires_on=now + timedelta(seconds=settings.cookie_max_age),
        )
    )
    db.commit()
    return secret


def end_session(db: Session, secret: str) -> None:
    """End one session (logout); an unknown secret is no error."""
    db.execute(delete(LoginSession).where(LoginSession.session_hash == hash_token(secret)))
    db.commit()


def end_user_sessions(db: Session, user_id: int) -> int:
    """End every session of a user, without committing (the caller's change commits it)."""
    result = db.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


_LIVE_SESSION = (
    select(User.id, User.is_admin)
    .join(LoginSession, LoginSession.user_id == User.id)
    .where(
        LoginSession.session_hash == bindparam("session_hash"),
        LoginSession.expires_on > bindparam("now"),
        User.name == bindparam("name"),
        User.disabled.is_(False),
    )
)


def principal_for_session(
    db: Session, settings: Settings, name: str, secret: str
) -> Principal | None:
    """The principal of a live session of the enabled user ``name``, or None."""
    row = (
        db.connection()
        .execute(_LIVE_SESSION, {"session_hash": hash_token(secret), "now": utcnow(), "name": name})
        .first()
    )
    return signed_in(db, settings, row[0], name, is_admin=row[1]) if row is not None else None
