"""Request dependencies: the database session, the caller, the server's state, paging, and
the permission each route declares.

Routes declare what they need with ``Annotated`` aliases (``db: DbSession, state: State``) and
the caller and the permission they need with ``Annotated[Principal, Require(Permission.X, On.Y)]``: ``On``
says which object the permission is checked on, read from the path (or loaded, for a build),
so the check runs before the route body, before any request body is parsed, and answers the
same 403 whether the object exists or not. The route table test (tests/security) fails for a
route that declares nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from envstore.api.logins import LoginGuard
from envstore.api.params import MAX_PAGE, parse_id
from envstore.auth import Principal
from envstore.auth.cookies import COOKIE_NAME, CookieSigner
from envstore.auth.oauth import IdentityProvider
from envstore.core.permissions import Permission
from envstore.core.specs import SpecLimits
from envstore.db.engine import discard
from envstore.errors import Forbidden, NotFound, Unavailable
from envstore.jobs import Queue
from envstore.jobs.events import BuildEvents
from envstore.services.access import build_owner
from envstore.services.common import MAX_PAGE_SIZE, Paging
from envstore.services.identity import identify
from envstore.services.submit import DEFAULT_INDEX_URL, PolicyInputs
from envstore.settings import Settings
from envstore.storage import BlobStore, StoreLayout

__all__ = [
    "AppState",
    "AuthorizedBody",
    "DbSession",
    "On",
    "PageQuery",
    "Require",
    "State",
    "check_permission",
    "declared_permission",
    "identify_caller",
    "require_build",
]

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    blobs: BlobStore
    layout: StoreLayout
    queue: Queue | None
    signer: CookieSigner | None = None
    provider: IdentityProvider | None = None
    login_guard: LoginGuard | None = None
    events: BuildEvents = field(default_factory=BuildEvents)
    long_polls: int = 0  # requests waiting on a build now (only touched on the event loop)

    def take_long_poll(self) -> bool:
        """Count one more waiting request; False (do not wait) at ``max_long_polls``."""
        if self.long_polls >= self.settings.max_long_polls:
            return False
        self.long_polls += 1
        return True

    def release_long_poll(self) -> None:
        self.long_polls -= 1

    @property
    def logins(self) -> LoginGuard:
        assert self.login_guard is not None, "create_app sets the login guard"
        return self.login_guard

    @property
    def cookies(self) -> CookieSigner:
        assert self.signer is not None, "create_app sets the cookie signer"
        return self.signer

    def wake_workers(self, build_id: int) -> None:
        """Tell the embedded workers about a queued or canceled build (none when API-only)."""
        if self.queue is not None:
            self.queue.notify(build_id)
        self.events.changed(build_id)  # a cancel ends a queued build: its waiters answer

    @property
    def policy_inputs(self) -> PolicyInputs:
        """What the policy compares submissions with: the channel alias and the PyPI index."""
        return PolicyInputs(
            self.settings.channel_alias, self.settings.pypi_index_url or DEFAULT_INDEX_URL
        )

    @property
    def limits(self) -> SpecLimits:
        s = self.settings
        return SpecLimits(s.max_spec_bytes, s.max_packages, s.max_yaml_depth, s.max_yaml_aliases)


async def get_state(request: Request) -> AppState:
    # async: no I/O here, and a sync dependency costs a thread-pool hop on every request
    state: AppState = request.app.state.envstore
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_db(state: State) -> AsyncIterator[Session]:
    # async: a new session does no I/O (it connects on first use, in the route's thread), so
    # only the clean-up, which hands the connection back, needs a thread-pool hop.
    session = state.factory()
    try:
        yield session
    except OperationalError as exc:
        raise Unavailable(f"database unavailable: {exc.orig}") from exc
    finally:
        # after the answer was sent: a connection lost meanwhile must not raise here (D1)
        await _unqueued(lambda: discard(session))


async def _unqueued(release: Callable[[], None]) -> None:
    """Run ``release`` (which hands a connection back) in a thread without waiting for a token
    of the shared thread pool. Queued behind new requests, which take tokens and then wait for
    a connection, the sessions holding every connection could not close: under 200 clients
    (api_load L1) requests convoyed on the pool timeout (8 reads/s, 503s). FastAPI runs its
    own dependencies' exits the same way, for the same reason."""
    await anyio.to_thread.run_sync(release, limiter=anyio.CapacityLimiter(1))


DbSession = Annotated[Session, Depends(get_db)]


def identify_caller(request: Request, state: AppState, db: Session) -> Principal:
    """The caller: cookie, then Bearer, then Basic; anonymous when none matches. It carries
    the client's address, which the audit log records with every change."""
    who = identify(
        db,
        state.settings,
        state.cookies,
        request.cookies.get(COOKIE_NAME),
        request.headers.get("authorization"),
    )
    return replace(who, address=request.client.host if request.client else None)


async def get_paging(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1)] = MAX_PAGE_SIZE,
    sort_by: Annotated[list[str] | None, Query()] = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> Paging:
    return Paging(
        page=page, size=min(size, MAX_PAGE_SIZE), sort_by=tuple(sort_by or ()), order=order
    )


PageQuery = Annotated[Paging, Depends(get_paging)]


class On(Enum):
    """What a route's permission is checked on."""

    PUBLIC = "anyone may call; the route itself shows only the caller's own data"
    LIST = "a list: the route filters rows in SQL to what the caller may see"
    ANY = "the caller must hold the permission on some pattern (the route checks the target)"
    EVERYWHERE = "the caller must hold the permission on every namespace (*/*): global settings"
    NAMESPACE = "the {namespace} of the path, namespace-wide (ns/*)"
    ENVIRONMENT = "{namespace}/{name} of the path"
    BUILD = "the namespace/environment of the build {build_id}, loaded from the database"


_READS = {Permission.NAMESPACE_READ, Permission.ROLE_MAPPING_READ}


def check_permission(
    request: Request, db: Session, who: Principal, permission: Permission, on: On
) -> None:
    """Raise Forbidden (or NotFound, to a caller who may know) unless ``who`` holds
    ``permission`` on what ``on`` names."""
    params = request.path_params
    if on is On.ANY and not who.can_somewhere(permission):
        raise Forbidden()
    if on is On.EVERYWHERE and not who.can_everywhere(permission):
        raise Forbidden()
    if on is On.NAMESPACE:
        namespace = str(params["namespace"])
        ok = (
            who.can_in_namespace(permission, namespace)
            if permission in _READS
            else who.can(permission, namespace)
        )
        if not ok:
            raise Forbidden()
    if on is On.ENVIRONMENT:
        who.require(permission, str(params["namespace"]), str(params["name"]))
    if on is On.BUILD:
        require_build(db, who, permission, parse_id(params["build_id"], "build id"))


def require_build(db: Session, who: Principal, permission: Permission, build_id: int) -> None:
    """Check ``permission`` on the namespace/environment of a build loaded by id (A2)."""
    owner = build_owner(db, build_id)
    if owner is None:
        # Only a caller who could see the build wherever it were may learn it is missing.
        if who.can_everywhere(permission):
            raise NotFound(f"build {build_id} not found")
        raise Forbidden()
    who.require(permission, *owner)


def Require(permission: Permission | None, on: On) -> Any:
    """Declare and enforce the permission of a route; the dependency yields the caller."""
    if (permission is None) != (on is On.PUBLIC):
        raise ValueError("a PUBLIC route declares no permission; every other route one")

    # One dependency identifies the caller and checks the permission: each sync dependency
    # is a thread-pool hop of its own on every request.
    def require(request: Request, state: State, db: DbSession) -> Principal:
        who = identify_caller(request, state, db)
        request.state.principal = who  # for answers that depend on who was refused (/v2/)
        if permission is not None:
            check_permission(request, db, who, permission, on)
        # Hand the connection back before the route body waits for its own thread: a request
        # holding one while queued for a thread starves those running (api_load, L1).
        db.close()
        return who

    require.__envstore_permission__ = (permission, on)  # type: ignore[attr-defined]
    return Depends(require)


def AuthorizedBody(model: type[_Model], permission: Permission, on: On) -> Any:
    """A JSON body of type ``model``, read from the socket only once the caller passed
    ``Require(permission, on)``.

    FastAPI reads and decodes a declared body parameter *before* it runs any dependency, so a
    route that must refuse unauthorised callers before touching their body (RELIABILITY.md I5)
    takes the body through this dependency instead. The size of what is read is bounded
    earlier by ``BodyLimitMiddleware``.
    """

    gate = Require(permission, on)

    # A default, not Annotated: annotations are strings here and cannot see this closure.
    async def read_body(request: Request, _who: Principal = gate) -> _Model:
        raw = await request.body()
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None

    return Depends(read_body)


def declared_permission(call: Any) -> tuple[Permission | None, On] | None:
    """The ``(permission, On)`` a dependency declares, if it is a :func:`Require`."""
    found = getattr(call, "__envstore_permission__", None)
    return found if isinstance(found, tuple) else None
