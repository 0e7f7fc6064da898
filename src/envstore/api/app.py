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
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from envstore import __version__, errors
from envstore.api import registry
from envstore.api.csrf import CsrfMiddleware
from envstore.api.deps import AppState
from envstore.api.docs import add_docs
from envstore.api.health import unready_dependency
from envstore.api.logins import LoginGuard
from envstore.api.metrics import CONTENT_TYPE, ApiMetrics, MetricsMiddleware
from envstore.api.middleware import BodyLimitMiddleware, QuerySlashMiddleware
from envstore.api.routes import artifacts as artifact_routes
from envstore.api.routes import (
    audit,
    auth,
    builds,
    environments,
    misc,
    namespaces,
    specifications,
    tokens,
)
from envstore.api.routes import (
    settings as setting_routes,
)
from envstore.auth.cookies import CookieSigner
from envstore.auth.oauth import provider_from_settings
from envstore.auth.secret import resolve_secret
from envstore.db.engine import make_engine
from envstore.jobs.celery_app import Broker
from envstore.jobs.distributed import Dispatcher
from envstore.jobs.events import BuildEvents
from envstore.jobs.gc import PeriodicCollector
from envstore.jobs.inprocess import InProcessQueue, clean_work_dir
from envstore.settings import Settings
from envstore.storage import StoreLayout
from envstore.storage.factory import make_blob_store
from envstore.storage.health import store_problem
from envstore.ui import error_page, install_ui, is_ui_path

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
    (errors.TooManyRequests, 429),
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
    # distributed mode (a broker): builds go to Celery workers; no embedded worker runs here
    broker = Broker.connect(settings) if settings.broker_url else None
    queue: InProcessQueue | Dispatcher | None = None
    if broker is not None:
        queue = Dispatcher(settings, engine, factory, broker)
    elif start_workers and settings.workers > 0:
        queue = InProcessQueue(settings, factory, blobs, events)
    metrics = ApiMetrics(engine, factory, broker.depth if broker is not None else None)
    state = AppState(
        settings, engine, factory, blobs, StoreLayout(settings.envs_dir), queue, events=events
    )
    state.signer = CookieSigner(resolve_secret(settings), settings.cookie_max_age)
    state.login_guard = LoginGuard(settings)
    state.provider = provider_from_settings(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        embedded = isinstance(queue, InProcessQueue)
        collector = PeriodicCollector(settings, factory, blobs) if embedded else None
        if embedded:
            clean_work_dir(settings)
        if queue is not None:
            queue.start()
        metrics.start()
        if collector is not None:
            collector.start()
        yield
        if collector is not None:
            collector.stop()
        metrics.stop()
        if queue is not None:
            queue.stop()
        state.logins.close()
        engine.dispose()

    prefix = settings.url_prefix
    app = FastAPI(
        title="envstore",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{prefix}/openapi.json",
        docs_url=None,  # add_docs: the same page, its files served from here (no CDN)
        redoc_url=None,
    )
    add_docs(app, prefix, f"{prefix}/openapi.json")
    app.state.envstore = state
    app.state.envstore_metrics = metrics
    for module in (misc, environments, builds, specifications, namespaces):
        app.include_router(module.router, prefix=f"{prefix}/api/v1")
    app.include_router(tokens.router, prefix=f"{prefix}/api/v1")
    app.include_router(setting_routes.router, prefix=f"{prefix}/api/v1")
    app.include_router(audit.router, prefix=f"{prefix}/api/v1")
    app.include_router(artifact_routes.router, prefix=f"{prefix}/api/v1")
    app.include_router(registry.router)  # distribution clients always ask for /v2/ at the root
    app.include_router(auth.router, prefix=prefix)
    install_ui(app, prefix)
    _health_routes(app, state, prefix, broker)
    _metrics_route(app, metrics, prefix)
    _error_handlers(app, prefix)
    app.add_middleware(
        CsrfMiddleware, prefix=prefix, allowed_origins=settings.cors_origins, signer=state.cookies
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=2 * settings.max_spec_bytes + 64 * 1024)
    app.add_middleware(QuerySlashMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:  # without origins it only adds a layer to every request
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["authorization", "content-type", "x-csrf-token"],
            expose_headers=["X-Envstore-Log-Offset"],
        )
    return app


def _health_routes(app: FastAPI, state: AppState, prefix: str, broker: Broker | None) -> None:
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
        problem = unready_dependency(broker, state.blobs)
        if problem is not None:
            return _error(503, problem, {"Retry-After": "5"})
        problem = store_problem(state.settings.store_dir, state.settings.ready_min_free_bytes)
        if problem is not None:
            return _error(503, problem, {"Retry-After": "30"})
        return JSONResponse({"status": "ok"})


def _metrics_route(app: FastAPI, metrics: ApiMetrics, prefix: str) -> None:
    @app.get(f"{prefix}/metrics", include_in_schema=False)
    async def scrape() -> Response:
        # async: formatting figures held in memory, no I/O (docs/deploy.md, metrics)
        return Response(metrics.scrape(), media_type=CONTENT_TYPE)


def _error_handlers(app: FastAPI, prefix: str) -> None:
    def answer(
        request: Request, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        # The web UI's pages answer errors with a page of their own, never a JSON dump.
        if is_ui_path(request, prefix):
            return error_page(request, status, message, headers)
        return _error(status, message, headers)

    @app.exception_handler(errors.EnvstoreError)
    async def envstore_error(request: Request, exc: errors.EnvstoreError) -> Response:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        retry_after = getattr(exc, "retry_after", None)  # Unavailable, TooManyRequests
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return answer(request, status, exc.message, headers)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> Response:
        log.warning("database unavailable: %s", exc.orig)
        return answer(request, 503, "database unavailable, retry later", {"Retry-After": "5"})

    @app.exception_handler(PoolTimeout)
    async def database_busy(request: Request, exc: PoolTimeout) -> Response:
        # every pooled connection stayed busy for pool_timeout: overloaded, not broken (L1)
        log.warning("database connection pool exhausted: %s", exc)
        return answer(request, 503, "server busy, retry later", {"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return answer(request, 422, _describe_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return answer(request, exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return answer(request, 500, "internal server error")


def _describe_validation(problems: Any) -> str:
    parts = []
    for problem in list(problems)[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)
