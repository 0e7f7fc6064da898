"""``{prefix}/docs``: Swagger UI over the OpenAPI document, with every file served from here.

FastAPI's default page loads Swagger UI from a CDN, so it is blank offline and tells a third
party about every visit. The files come from the installed ``swagger-ui-py`` package (pinned
and hash-locked like every dependency); only the three the page loads are served.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

__all__ = ["add_docs"]

_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def _static_dir() -> Path:
    # find_spec does not import the package (its __init__ loads every web-framework handler)
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations, "swagger-ui-py is installed"
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def add_docs(app: FastAPI, prefix: str, openapi_url: str) -> None:
    static = _static_dir()
    base = f"{prefix}/docs/static"

    async def page(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title="envstore API",
            swagger_js_url=f"{base}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}/swagger-ui.css",
            swagger_favicon_url=f"{base}/favicon-32x32.png",
        )

    async def asset(request: Request) -> Response:
        name = str(request.path_params["name"])
        media_type = _FILES.get(name)
        if media_type is None:
            return JSONResponse({"status": "error", "message": "not found"}, status_code=404)
        return FileResponse(
            static / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.add_route(f"{prefix}/docs", page, methods=["GET"], include_in_schema=False)
    app.add_route(f"{base}/{{name}}", asset, methods=["GET"], include_in_schema=False)
