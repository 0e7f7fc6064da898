"""Rendering the web UI's pages: the Jinja2 environment, its filters, the page context every
template gets (who is signed in, the CSRF token, the navigation), and the HTML error page.

The templates are plain Jinja2 with autoescaping; nothing here touches the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from envstore import __version__
from envstore.api.deps import AppState
from envstore.auth import Principal
from envstore.auth.cookies import COOKIE_NAME
from envstore.core.permissions import Permission
from envstore.errors import Forbidden

__all__ = [
    "STATIC_DIR",
    "check_csrf",
    "error_page",
    "page",
    "redirect",
    "ui_state",
]

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"

# Governance pages: a nav item is a link once its route exists (see _nav()), greyed out
# before; shown only to callers who hold the page's permission somewhere.
_PLANNED = (
    ("Policy", "policy", Permission.SETTING_READ),
    ("Audit", "audit", Permission.AUDIT_READ),
)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=human_size, when=when, ago=ago, duration=duration, status=status_badge, time=time_tag
    )
    return env


def ui_state(request: Request) -> AppState:
    state: AppState = request.app.state.envstore
    return state


def human_size(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def when(value: datetime | None) -> str:
    """An ISO timestamp in UTC, for ``<time datetime=...>`` (the page script localises it)."""
    return "" if value is None else value.replace(tzinfo=UTC).isoformat(timespec="seconds")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    now = now or datetime.now(UTC).replace(tzinfo=None)
    seconds = int((now - value).total_seconds())
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


_BADGE = Markup(
    '<span class="status status-%s"><span class="dot" aria-hidden="true"></span>%s</span>'
)
_BADGES = {
    status: _BADGE % (status.lower(), status.capitalize())
    for status in ("QUEUED", "BUILDING", "COMPLETED", "FAILED", "CANCELED")
}


def status_badge(value: str) -> Markup:
    # A filter, not a macro: a Jinja macro call costs ~10x a Python call, and a page of 50
    # environments makes 100 of these. Markup's % escapes what it is given.
    return _BADGES.get(value) or _BADGE % (value.lower(), value.capitalize())


def time_tag(value: datetime | None) -> Markup:
    """``<time>`` with the ISO instant (the script shows it local on hover) and "5 min ago"."""
    if value is None:
        return Markup("—")
    iso = when(value)
    return Markup('<time datetime="%s" title="%s">%s</time>') % (iso, iso, ago(value))


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


_JINJA = _environment()


def _session(request: Request) -> str:
    return request.cookies.get(COOKIE_NAME, "")


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Refuse a form post signed in by the login cookie without that login's CSRF token.

    Without a valid login cookie the caller is anonymous or sent an API token, neither of
    which a page of another site can make a browser send on someone else's behalf."""
    cookie = _session(request)
    cookies = ui_state(request).cookies
    if cookies.csrf_token(cookie) is None:
        return
    if not cookies.check_csrf_token(cookie, form.get("csrf", "")):
        raise Forbidden("this form expired or did not come from this site; reload and try again")


def _route_paths(request: Request) -> frozenset[str]:
    """Every route path of the app, included routers flattened (FastAPI >= 0.16x keeps them
    nested, so ``app.routes`` alone lists only the top level); computed once per app."""
    cached: frozenset[str] | None = getattr(request.app.state, "ui_route_paths", None)
    if cached is not None:
        return cached
    found: set[str] = set()
    for route in request.app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            found.update(context.path for context in contexts())
        else:
            found.add(getattr(route, "path", ""))
    paths = frozenset(found)
    request.app.state.ui_route_paths = paths
    return paths


def _nav(request: Request, who: Principal | None) -> list[dict[str, Any]]:
    prefix = ui_state(request).settings.url_prefix
    items: list[dict[str, Any]] = [
        {"label": "Environments", "href": f"{prefix}/ui/", "key": "environments"},
    ]
    if who is not None and who.can_somewhere(Permission.ENV_CREATE):
        items.append({"label": "New environment", "href": f"{prefix}/ui/new/", "key": "new"})
    if who is None or who.authenticated:
        items.append({"label": "Tokens", "href": f"{prefix}/ui/tokens/", "key": "tokens"})
    if who is not None and who.can_somewhere(Permission.NAMESPACE_CREATE):
        items.append({"label": "Namespaces", "href": f"{prefix}/ui/namespaces/", "key": "ns"})
    paths = _route_paths(request)
    for label, key, permission in _PLANNED:
        if who is not None and not who.can_somewhere(permission):
            continue
        href = f"{prefix}/ui/{key}/"
        items.append({"label": label, "key": key, "href": href if href in paths else None})
    return items


def page(
    request: Request,
    who: Principal | None,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    active: str = "",
) -> HTMLResponse:
    state = ui_state(request)
    prefix = state.settings.url_prefix
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    values = {
        "prefix": prefix,
        "static": f"{prefix}/ui/static",
        "version": __version__,
        "who": who,
        "signed_in": who is not None and who.authenticated,
        "csrf": state.cookies.csrf_token(_session(request)) or "",
        "nav": _nav(request, who),
        "active": active,
        "login_url": f"{prefix}/ui/login/?next={quote(here, safe='/')}",
        **(context or {}),
    }
    html = _JINJA.get_template(template).render(values)
    headers = {
        "Cache-Control": "no-store",
        # Our own assets only: no inline script, nothing from another origin.
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return HTMLResponse(html, status_code=status, headers=headers)


def redirect(request: Request, path: str, **query: str) -> RedirectResponse:
    """303 to a UI path (after a form post), with an optional notice in the query."""
    prefix = ui_state(request).settings.url_prefix
    tail = "&".join(f"{k}={quote(v)}" for k, v in query.items())
    return RedirectResponse(f"{prefix}/ui{path}{'?' + tail if tail else ''}", status_code=303)


_TITLES = {
    400: "That did not work",
    403: "Not allowed",
    404: "Not found",
    409: "That conflicts with the current state",
    413: "Too large",
    422: "That request was not understood",
    503: "The server is busy or its database is unreachable",
}


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """The HTML answer for an error on a UI page: a message, never a JSON dump."""
    signed_in = bool(_session(request))
    context = {
        "status": status,
        "title": _TITLES.get(status, "Something went wrong"),
        "message": message,
        "offer_login": status == 403 and not signed_in,
    }
    answer = page(request, None, "error.html", context, status=status)
    answer.headers.update(headers or {})
    return answer
