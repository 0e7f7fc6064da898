"""Login pages at ``{prefix}``: ``GET/POST /login/``, ``POST /logout/``, and the OAuth2/OIDC
(or JupyterHub) redirect pair ``/oauth_login/`` → provider → ``/oauth_callback/``.

``POST /login/`` takes JSON (``{"username", "password"}``, answered with JSON) or a plain HTML
form (answered with a redirect, or the page again with the error), so the page works without
scripts. A successful login records a server-side session and sets the ``conda-store-auth``
cookie naming it: signed, timestamped, HttpOnly, SameSite=Lax, expiring after
``cookie_max_age``. Logout ends that session; failed logins are throttled (A10).
"""

from __future__ import annotations

import html
import secrets
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session

from envstore.api.deps import AppState, DbSession, On, Require, State
from envstore.auth import Principal
from envstore.auth.cookies import COOKIE_NAME
from envstore.auth.oauth import new_pkce_pair
from envstore.auth.redirects import safe_next
from envstore.errors import (
    EnvstoreError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unavailable,
)
from envstore.services.sessions import end_session, start_session
from envstore.services.users import (
    LoginCandidate,
    login_candidate,
    record_login,
    sync_external_user,
)
from envstore.settings import Settings

router = APIRouter(tags=["login"])

Anyone = Annotated[Principal, Require(None, On.PUBLIC)]
_STATE_COOKIE = "envstore-oauth-state"
_FORM = "application/x-www-form-urlencoded"
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            media: {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "username": {"type": "string", "maxLength": 255},
                        "password": {"type": "string", "maxLength": 1024},
                    },
                }
            }
            for media in ("application/json", _FORM)
        },
    }
}


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


def _next_url(state: AppState, raw: str | None) -> str:
    """Where to go after login: a path on this server only (A12)."""
    return safe_next(raw, f"{state.settings.url_prefix}/")


def _is_form(request: Request) -> bool:
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media == _FORM


def _set_login(response: Response, state: AppState, value: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=state.settings.cookie_max_age,
        path=f"{state.settings.url_prefix}/",
        httponly=True,
        samesite="lax",
        secure=state.settings.cookie_secure,
    )


def _login_page(state: AppState, target: str, error: str = "") -> str:
    prefix = state.settings.url_prefix
    query = html.escape(target, quote=True)
    external = (
        f'<p><a href="{prefix}/oauth_login/?next={query}">Sign in with '
        f"{html.escape(state.provider.name)}</a></p>"
        if state.provider is not None
        else ""
    )
    form = _LOGIN_FORM.format(prefix=prefix, next=query) if state.settings.local_login else ""
    alert = f'<p role="alert">{html.escape(error)}</p>' if error else ""
    return _PAGE.format(body=alert + external + form)


@router.get("/login/", response_class=HTMLResponse)
def login_page(state: State, _who: Anyone, next: str | None = None) -> HTMLResponse:
    return HTMLResponse(_login_page(state, _next_url(state, next)))


async def _credentials(request: Request, form: bool) -> LoginBody:
    raw = await request.body()  # bounded by BodyLimitMiddleware
    try:
        if not form:
            return LoginBody.model_validate_json(raw or b"{}")
        fields = parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=8)
        return LoginBody(
            username=(fields.get("username") or [""])[0],
            password=(fields.get("password") or [""])[0],
        )
    except ValidationError as exc:
        if form:
            raise InvalidInput("enter a user name and a password") from None
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _candidate(db: Session, username: str) -> LoginCandidate:
    try:
        return login_candidate(db, username)
    finally:
        # Hand the connection back before the slow password check: logins waiting for it
        # must not hold the pool that every other request needs.
        db.rollback()


def _open_session(db: Session, settings: Settings, user_id: int, new_hash: str | None) -> str:
    record_login(db, user_id, new_hash)
    return start_session(db, settings, user_id)


async def _sign_in(request: Request, db: Session, state: AppState, body: LoginBody) -> str:
    """Check the password (throttled, bounded) and return the signed cookie of a new session."""
    if not state.settings.local_login:
        raise Forbidden("local accounts are turned off; sign in with the identity provider")
    address = request.client.host if request.client is not None else "unknown"
    guard = state.logins
    await guard.check(body.username, address)
    async with guard.admitted():
        candidate = await run_in_threadpool(_candidate, db, body.username)
        ok, new_hash = await guard.verify(candidate.stored, body.password)
    if not ok or candidate.user_id is None:
        guard.throttle.failed(body.username, address)
        raise Forbidden("wrong user name or password")
    guard.throttle.succeeded(body.username)
    session = await run_in_threadpool(
        _open_session, db, state.settings, candidate.user_id, new_hash
    )
    return state.cookies.sign_login(body.username, session)


_PAGE_STATUS = {Forbidden: 403, TooManyRequests: 429, Unavailable: 503}


@router.post("/login/", openapi_extra=_BODY_DOC)
async def login(
    request: Request,
    db: DbSession,
    state: State,
    _who: Anyone,
    next: str | None = None,
) -> Response:
    form = _is_form(request)
    target = _next_url(state, next)
    try:
        cookie = await _sign_in(request, db, state, await _credentials(request, form))
    except EnvstoreError as exc:
        if not form:
            raise
        # a plain form post gets the page again, with the reason, and the same status
        retry = getattr(exc, "retry_after", None)
        return HTMLResponse(
            _login_page(state, target, exc.message),
            status_code=_PAGE_STATUS.get(type(exc), 400),
            headers={"Retry-After": str(retry)} if retry is not None else None,
        )
    response: Response
    if form:
        response = RedirectResponse(target, status_code=303)
    else:
        data = {"redirect_url": target, "csrf_token": state.cookies.csrf_token(cookie)}
        response = JSONResponse({"status": "ok", "data": data, "message": None})
    _set_login(response, state, cookie)
    return response


@router.post("/logout/")
def logout(request: Request, db: DbSession, state: State, _who: Anyone) -> Response:
    """End this browser's session (A11) and drop its cookie; a form post goes to the login."""
    login = state.cookies.read_login(request.cookies.get(COOKIE_NAME, ""))
    if login is not None:
        end_session(db, login.session)
    response: Response = (
        RedirectResponse(f"{state.settings.url_prefix}/login/", status_code=303)
        if _is_form(request)
        else JSONResponse({"status": "ok", "message": "logged out"})
    )
    response.delete_cookie(COOKIE_NAME, path=f"{state.settings.url_prefix}/")
    return response


def _callback_url(request: Request, state: AppState) -> str:
    return state.settings.oauth_callback_url or str(request.url_for("oauth_callback"))


@router.get("/oauth_login/")
def oauth_login(
    request: Request,
    state: State,
    _who: Anyone,
    next: str | None = None,
) -> RedirectResponse:
    if state.provider is None:
        raise NotFound("no external identity provider is configured")
    verifier, challenge = new_pkce_pair()
    nonce = secrets.token_urlsafe(24)
    url = state.provider.authorize_url(nonce, challenge, _callback_url(request, state))
    response = RedirectResponse(url, status_code=302)
    signed = state.cookies.sign_state({"s": nonce, "v": verifier, "n": _next_url(state, next)})
    response.set_cookie(
        _STATE_COOKIE,
        signed,
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=state.settings.cookie_secure,
    )
    return response


@router.get("/oauth_callback/", name="oauth_callback")
def oauth_callback(
    request: Request,
    db: DbSession,
    state: State,
    _who: Anyone,
    code: str = "",
    returned_state: Annotated[str, Query(alias="state")] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> RedirectResponse:
    """Finish an external login: check the state, trade the code, sign the user in."""
    if state.provider is None:
        raise NotFound("no external identity provider is configured")
    if error:
        # The provider's own error code (RFC 6749 4.1.2.1), e.g. access_denied.
        raise Forbidden(f"the identity provider refused the login: {error}")
    saved = state.cookies.read_state(request.cookies.get(_STATE_COOKIE, ""))
    if (
        not code
        or saved is None
        or not secrets.compare_digest(str(saved.get("s", "")), returned_state)
    ):
        raise InvalidInput("the login expired or did not start here; sign in again")
    identity = state.provider.identify(code, str(saved["v"]), _callback_url(request, state))
    user = sync_external_user(db, identity, state.provider.name)
    if user is None:
        raise Forbidden(f"user {identity.username!r} may not sign in with this provider")
    response = RedirectResponse(_next_url(state, str(saved.get("n", ""))), status_code=302)
    response.delete_cookie(_STATE_COOKIE)
    session = start_session(db, state.settings, user.id)
    _set_login(response, state, state.cookies.sign_login(user.name, session))
    return response


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>envstore: sign in</title></head>
<body><main><h1>Sign in to envstore</h1>{body}</main></body></html>
"""
_LOGIN_FORM = """<form id="login" method="post" action="{prefix}/login/?next={next}">
<p><label>User name <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"
required></label></p>
<p><button type="submit">Sign in</button></p></form>
"""
