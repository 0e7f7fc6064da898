"""The web UI at ``{prefix}/ui/``: server-rendered pages (Jinja2) with our own CSS and script.

Pages read through the services the API's read routes use and declare their permission with
the API's own ``Require``; changes go through the API (page script, JSON from this origin) or
through form posts that carry the session's CSRF token and call the same services. The live
parts (a build's status and log) use the API's long polls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from envstore.api.deps import On, Require
from envstore.auth import Principal
from envstore.ui import admin, forms, governance, pages
from envstore.ui.render import STATIC_DIR, error_page

__all__ = ["error_page", "install_ui", "is_ui_path"]


def install_ui(app: FastAPI, prefix: str) -> None:
    """Add the UI's routes and static files under ``{prefix}/ui/``, and ``{prefix}/`` → there."""
    for module in (pages, forms, admin, governance):
        app.include_router(module.router, prefix=f"{prefix}/ui")
    app.mount(f"{prefix}/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.get(f"{prefix}/", include_in_schema=False)
    def home(_who: Annotated[Principal, Require(None, On.PUBLIC)]) -> RedirectResponse:
        return RedirectResponse(f"{prefix}/ui/", status_code=307)


def is_ui_path(request: Request, prefix: str) -> bool:
    """Whether an error on this request is answered with an HTML page, not JSON."""
    path = request.url.path
    return path.startswith(f"{prefix}/ui/") or path == f"{prefix}/ui"
