"""Login pages at ``{prefix}``: ``GET/POST /login/``, ``POST /logout/``, and the OAuth2/OIDC
(or JupyterHub) redirect pair ``/oauth_login/`` → provider → ``/oauth_callback/``.

A successful login sets the ``conda-store-auth`` cookie: signed, timestamped, HttpOnly,
SameSite=Lax, expiring after ``cookie_max_age``.
"""

from __future__ import annotations

import html
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from envstore.api.deps import AppState, DbSession, On, Require, State
from envstore.auth import Principal
from envstore.auth.cookies import COOKIE_NAME
from envstore.auth.oauth import new_pkce_pair
from envstore.errors import Forbidden, InvalidInput, NotFound
from envstore.services.users import authenticate, sync_external_user

router = APIRouter(tags=["login"])

Anyone = Annotated[Principal, Require(None, On.PUBLIC)]
_STATE_COOKIE = "envstore-oauth-state"


class LoginBody(BaseModel):
    username: str = Field(max_length=255)
    password: str = Field(max_length=1024)


def _next_url(state: AppState, raw: str | None) -> str:
    """Where to go after login: a path on this server only (no open redirect)."""
    home = f"{state.settings.url_prefix}/"
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return home
    return raw


def _set_login(response: Response, state: AppState, username: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        state.cookies.sign_login(username),
        max_age=state.settings.cookie_max_age,
        path=f"{state.settings.url_prefix}/",
        httponly=True,
        samesite="lax",
        secure=state.settings.cookie_secure,
    )


@router.get("/login/", response_class=HTMLResponse)
def login_page(state: State, _who: Anyone, next: str | None = None) -> HTMLResponse:
    target = html.escape(_next_url(state, next), quote=True)
    prefix = state.settings.url_prefix
    external = (
        f'<p><a href="{prefix}/oauth_login/?next={target}">Sign in with '
        f"{html.escape(state.provider.name)}</a></p>"
        if state.provider is not None
        else ""
    )
    form = _LOGIN_FORM.format(prefix=prefix, next=target) if state.settings.local_login else ""
    return HTMLResponse(_PAGE.format(body=external + form))


@router.post("/login/")
def login(
    db: DbSession,
    state: State,
    _who: Anyone,
    body: LoginBody,
    next: str | None = None,
) -> JSONResponse:
    if not state.settings.local_login:
        raise Forbidden("local accounts are turned off; sign in with the identity provider")
    user = authenticate(db, body.username, body.password)
    if user is None:
        raise Forbidden("wrong user name or password")
    redirect = _next_url(state, next)
    response = JSONResponse({"status": "ok", "data": {"redirect_url": redirect}, "message": None})
    _set_login(response, state, user.name)
    return response


@router.post("/logout/")
def logout(state: State, _who: Anyone) -> JSONResponse:
    response = JSONResponse({"status": "ok", "message": "logged out"})
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
    _set_login(response, state, user.name)
    return response


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>envstore: sign in</title></head>
<body><main><h1>Sign in to envstore</h1>{body}</main></body></html>
"""
_LOGIN_FORM = """<form id="login" method="post" action="{prefix}/login/?next={next}">
<label>User name <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
required></label>
<button type="submit">Sign in</button></form>
<script>
document.getElementById("login").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const form = event.target;
  const answer = await fetch(form.action, {{method: "POST", credentials: "same-origin",
    headers: {{"content-type": "application/json"}},
    body: JSON.stringify({{username: form.username.value, password: form.password.value}})}});
  const body = await answer.json();
  if (answer.ok) {{ window.location = body.data.redirect_url; }}
  else {{ alert(body.message); }}
}});
</script>
"""
