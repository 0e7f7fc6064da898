"""Users and groups: local accounts, accounts from a login provider, the first admin."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from envstore.auth.oauth import ExternalIdentity
from envstore.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from envstore.core.names import validate_name
from envstore.db.engine import make_engine, session_scope
from envstore.db.models import Group, Namespace, User, UserGroup, utcnow
from envstore.db.schema import ensure_schema
from envstore.errors import Conflict, Forbidden, InvalidInput, NotFound
from envstore.services.audit import record
from envstore.services.sessions import end_user_sessions
from envstore.settings import Settings

__all__ = [
    "LoginCandidate",
    "add_user",
    "admin_exists",
    "find_user",
    "login_candidate",
    "record_login",
    "set_disabled",
    "set_password",
    "sync_external_user",
    "user_store",
]


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")


def find_user(db: Session, name: str) -> User | None:
    return db.scalar(select(User).where(User.name == name))


def admin_exists(db: Session) -> bool:
    query = select(User.id).where(User.is_admin.is_(True), User.disabled.is_(False))
    return db.scalar(query.limit(1)) is not None


def add_user(
    db: Session, name: str, password: str, *, admin: bool = False, groups: Iterable[str] = ()
) -> User:
    """Create a local account (``envstore user add``)."""
    validate_name(name, kind="user name")
    _check_password(password)
    if find_user(db, name) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, password_hash=hash_password(password), provider="local", is_admin=admin)
    db.add(user)
    db.flush()
    _set_groups(db, user, groups)
    record(
        db,
        None,
        "user.create",
        target=f"user {name}",
        after={"name": name, "admin": admin, "groups": sorted(groups), "provider": "local"},
    )
    db.commit()
    return user


def set_password(db: Session, name: str, password: str) -> None:
    """Change a local account's password (``envstore user passwd``); it ends the user's
    browser sessions (A11). API tokens stay: they are revoked one by one."""
    _check_password(password)
    user = find_user(db, name)
    if user is None:
        raise NotFound(f"user {name!r} not found")
    user.password_hash = hash_password(password)
    end_user_sessions(db, user.id)
    record(db, None, "user.password", target=f"user {name}")  # never the password or its hash
    db.commit()


def set_disabled(db: Session, name: str, disabled: bool) -> None:
    """Disable (or enable again) an account (``envstore user disable|enable``). A disabled
    user's sessions end, and their tokens stop working while the account is disabled."""
    user = find_user(db, name)
    if user is None:
        raise NotFound(f"user {name!r} not found")
    user.disabled = disabled
    if disabled:
        end_user_sessions(db, user.id)
    db.commit()


@dataclass(frozen=True)
class LoginCandidate:
    """The enabled local account a login names, if any, and its stored password hash.

    Checking the password (Argon2, slow by design) is left to the caller, which bounds how
    many checks run at once; ``stored`` is None for an unknown, disabled or external user,
    which the caller still checks against a dummy hash so that timing tells nothing."""

    user_id: int | None
    stored: str | None


def login_candidate(db: Session, name: str) -> LoginCandidate:
    user = find_user(db, name)
    if user is None or user.disabled or user.password_hash is None:
        return LoginCandidate(None, None)
    return LoginCandidate(user.id, user.password_hash)


def record_login(db: Session, user_id: int, new_hash: str | None = None) -> None:
    """Note a successful login, storing a re-computed hash when the parameters changed."""
    user = db.get(User, user_id)
    if user is None or user.disabled:  # removed or disabled while the password was checked
        raise Forbidden("wrong user name or password")
    if new_hash is not None:
        user.password_hash = new_hash
    user.last_login_on = utcnow()
    db.commit()


def sync_external_user(db: Session, identity: ExternalIdentity, provider: str) -> User | None:
    """Create or update the user a provider vouched for, with the provider's groups.

    A local account of the same name is not taken over: that returns None.
    """
    user = find_user(db, identity.username)
    if user is None:
        user = User(name=identity.username, provider=provider)
        db.add(user)
        db.flush()
        record(
            db,
            None,
            "user.create",
            target=f"user {identity.username}",
            after={"name": identity.username, "provider": provider},
        )
    elif user.provider != provider or user.disabled:
        return None
    _set_groups(db, user, identity.groups, replace=True)
    _ensure_personal_namespace(db, user.name)
    user.last_login_on = utcnow()
    db.commit()
    return user


def _ensure_personal_namespace(db: Session, name: str) -> None:
    """A provider's user finds their own namespace (``{username}/*``) there at first login;
    one an administrator deleted stays deleted."""
    if db.scalar(select(Namespace.id).where(Namespace.name == name)) is None:
        db.add(Namespace(name=name, metadata_={}))
        db.flush()


def _usable(name: str) -> bool:
    try:
        validate_name(name, kind="group name")
    except InvalidInput:
        return False
    return True


def _set_groups(db: Session, user: User, names: Iterable[str], *, replace: bool = False) -> None:
    if replace:  # from a provider: keep the groups usable as names, skip the others
        wanted = sorted({n for n in names if _usable(n)})
    else:
        wanted = sorted({validate_name(n, kind="group name") for n in names})
    if replace:
        db.execute(delete(UserGroup).where(UserGroup.user_id == user.id))
    existing = {g.name: g for g in db.scalars(select(Group).where(Group.name.in_(wanted)))}
    for name in wanted:
        group = existing.get(name)
        if group is None:
            group = Group(name=name)
            db.add(group)
            db.flush()
        if replace or db.get(UserGroup, (user.id, group.id)) is None:
            db.add(UserGroup(user_id=user.id, group_id=group.id))
    db.flush()


@contextmanager
def user_store(settings: Settings) -> Iterator[Session]:
    """A session on the configured database for the server-host commands (``envstore user``),
    bringing the embedded SQLite schema up to date first, as ``serve`` would."""
    engine = make_engine(settings.resolved_database_url)
    try:
        ensure_schema(engine, auto_upgrade=settings.is_embedded_sqlite)
        with session_scope(sessionmaker(engine, expire_on_commit=False)) as db:
            yield db
    finally:
        engine.dispose()
