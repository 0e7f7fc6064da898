"""The FastAPI application: wiring, the error mapping, health routes and middleware.

This is the only place where :mod:`envstore.errors` become HTTP status codes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from envstore import __version__, errors
from envstore.api import registry
from envstore.api.deps import AppState
from envstore.api.middleware import BodyLimitMiddleware, QuerySlashMiddleware
from envstore.api.routes import artifacts as artifact_routes
from envstore.api.routes import (
    auth,
    builds,
    environments,
    misc,
    namespaces,
    specifications,
    tokens,
)
from envstore.auth.cookies import CookieSigner
from envstore.auth.oauth import provider_from_settings
from envstore.auth.secret import resolve_secret
from envstore.db.engine import make_engine
from envstore.jobs.events import BuildEvents
from envstore.jobs.gc import PeriodicCollector
from envstore.jobs.inprocess import InProcessQueue, clean_work_dir
from envstore.settings import Settings
from envstore.storage import StoreLayout
from envstore.storage.factory import make_blob_store

__all__ = ["create_app"]

log = logging.getLogger("envstore.api")

_STATUS: list[tuple[type[errors.EnvstoreError], int]] = [
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Forbidden, 403),
    (errors.PayloadTooLarge, 413),
    (errors.InvalidInput, 400),
    (errors.PolicyViolation, 400),
    (errors.Unavailable, 503),
    (errors.BuildFailure, 400),
]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"status": "error", "message": message}, status_code=status, headers=headers
    )


def create_app(settings: Settings, *, start_workers: bool = True) -> FastAPI:
    """Build the application; the database must already be at the current schema."""
    engine = make_engine(settings.resolved_database_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    blobs = make_blob_store(settings)
    events = BuildEvents()
    queue = (
        InProcessQueue(settings, factory, blobs, events)
        if start_workers and settings.workers > 0
        else None
    )
    state = AppState(
        settings, engine, factory, blobs, StoreLayout(settings.envs_dir), queue, events=events
    )
    state.signer = CookieSigner(resolve_secret(settings), settings.cookie_max_age)
    state.provider = provider_from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        collector = PeriodicCollector(settings, factory, blobs) if queue is not None else None
        if queue is not None:
            clean_work_dir(settings)
            queue.start()
        if collector is not None:
            collector.start()
        yield
        if collector is not None:
            collector.stop()
        if queue is not None:
            queue.stop()
        engine.dispose()

    prefix = settings.url_prefix
    app = FastAPI(
        title="envstore",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=f"{prefix}/docs",
        redoc_url=None,
    )
    app.state.envstore = state
    for module in (misc, environments, builds, specifications, namespaces):
        app.include_router(module.router, prefix=f"{prefix}/api/v1")
    app.include_router(tokens.router, prefix=f"{prefix}/api/v1")
    app.include_router(artifact_routes.router, prefix=f"{prefix}/api/v1")
    app.include_router(registry.router)  # distribution clients always ask for /v2/ at the root
    app.include_router(auth.router, prefix=prefix)
    _health_routes(app, state, prefix)
    _error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=2 * settings.max_spec_bytes + 64 * 1024)
    app.add_middleware(QuerySlashMiddleware)
    if settings.cors_origins:  # without origins it only adds a layer to every request
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["X-Envstore-Log-Offset"],
        )
    return app


def _health_routes(app: FastAPI, state: AppState, prefix: str) -> None:
    @app.get(f"{prefix}/livez", include_in_schema=False)
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(f"{prefix}/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        try:
            with state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError:
            return _error(503, "database unavailable", {"Retry-After": "5"})
        return JSONResponse({"status": "ok"})


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.EnvstoreError)
    async def envstore_error(_request: Request, exc: errors.EnvstoreError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        headers = (
            {"Retry-After": str(exc.retry_after)} if isinstance(exc, errors.Unavailable) else None
        )
        return _error(status, exc.message, headers)

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return _error(503, "database unavailable, retry later", {"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _describe_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error(500, "internal server error")


def _describe_validation(problems: Any) -> str:
    parts = []
    for problem in list(problems)[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)
