"""The CSRF guard of the API and the login pages (A9), an ASGI middleware.

Only requests that could be forged matter: a state-changing method (POST, PUT, PATCH,
DELETE) that carries the login cookie. Such a request passes when it carries a valid
``X-CSRF-Token`` (the token ``POST /login/`` hands out for its session), or else when

- its ``Origin``/``Referer``, if it names one, is this server or an ``ENVSTORE_CORS_ORIGINS``
  entry, and
- under ``{prefix}/api/``, its body is JSON (``Content-Type: application/json``), which another
  site's page cannot send without a CORS preflight.

Pages that take HTML forms (``/login/``, ``/logout/``, the web UI under ``{prefix}/ui/``, which
adds its own per-session form token) need only the origin check. ``POST /login/`` is checked
for its origin even without a cookie, so that no other site can sign a visitor in to an
account of its choosing. Requests with an API token and no cookie are never affected, nor
are non-browser clients that name no origin and send JSON.

Refusals are ``403`` with the usual ``{"status": "error", "message": ...}`` body, before the
route runs or any body is read. :func:`origin_problem` gives the UI the same verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from envstore.auth.cookies import COOKIE_NAME, CookieSigner
from envstore.auth.csrf import CSRF_HEADER, is_json, request_origin, trusted_origin

__all__ = ["CsrfMiddleware", "origin_problem"]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_problem(request: Request) -> str | None:
    """Why this request does not come from this server's pages (None: it does, or it names
    no origin). For the web UI's form handlers, which check their own token besides."""
    allowed = request.app.state.envstore.settings.cors_origins
    return _foreign(request.headers, allowed)


def _foreign(headers: Mapping[str, str], allowed: Sequence[str]) -> str | None:
    if trusted_origin(headers, allowed) is False:
        return (
            f"cross-site request refused: origin {request_origin(headers)} is neither this "
            "server nor one of ENVSTORE_CORS_ORIGINS"
        )
    return None


class CsrfMiddleware:
    def __init__(
        self, app: ASGIApp, *, prefix: str, allowed_origins: Sequence[str], signer: CookieSigner
    ) -> None:
        self.app = app
        self.api = f"{prefix}/api/"
        self.login = f"{prefix}/login/"
        self.allowed = list(allowed_origins)
        self.signer = signer

    def problem(self, method: str, path: str, headers: Headers) -> str | None:
        """Why a request is refused, or None to let it through."""
        if method not in _UNSAFE:
            return None
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE_NAME)
        if not cookie:
            return _foreign(headers, self.allowed) if path == self.login else None
        token = headers.get(CSRF_HEADER)
        if token and self.signer.check_csrf_token(cookie, token):
            return None
        foreign = _foreign(headers, self.allowed)
        if foreign is not None:
            return foreign
        if path.startswith(self.api) and not is_json(headers.get("content-type")):
            return (
                "a request signed in with the login cookie must send a JSON body "
                "(Content-Type: application/json) or an X-CSRF-Token header; "
                "scripts and other clients use an API token instead"
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Safe methods pass at once, before any parsing of the headers (every read comes here).
        if scope["type"] == "http" and scope["method"] in _UNSAFE:
            problem = self.problem(scope["method"], scope["path"], Headers(scope=scope))
            if problem is not None:
                body = json.dumps({"status": "error", "message": problem}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
