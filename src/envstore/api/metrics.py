"""Prometheus metrics at ``{prefix}/metrics``: API latency, builds, queues, database pool.

Each API process exports its own figures (Prometheus scrapes every process, as it scrapes
every instance of any service; docs/deploy.md). Request latency is labelled by route template
(``/api/v1/build/{build_id}/``), never by raw path, so the label set stays bounded. Figures
that need the database or the broker (builds by state, queue depth) are refreshed by a
background thread every few seconds, so a scrape only formats numbers held in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from envstore.core.builds import BuildStatus
from envstore.db.engine import session_scope
from envstore.services.dispatch import counts_by_status

__all__ = ["CONTENT_TYPE", "ApiMetrics", "MetricsMiddleware"]

log = logging.getLogger("envstore.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiMetrics(Collector):
    """The registry of one API process and the figures it refreshes in the background."""

    def __init__(
        self,
        engine: Engine,
        factory: sessionmaker[Session],
        depth: Callable[[], dict[str, int]] | None,
        refresh_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.factory = factory
        self.depth = depth
        self.refresh_seconds = refresh_seconds
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "envstore_http_request_duration_seconds",
            "API request latency by method, route template and status",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)
        self._builds: dict[str, int] = {}
        self._queues: dict[str, int] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def scrape(self) -> bytes:
        return generate_latest(self.registry)

    def refresh(self) -> None:
        try:
            with session_scope(self.factory) as db:
                self._builds = counts_by_status(db)
        except Exception as exc:
            log.debug("metrics: builds not refreshed: %s", exc)
        if self.depth is not None:
            try:
                self._queues = self.depth()
            except Exception as exc:
                log.debug("metrics: queue depth not refreshed: %s", exc)

    def _loop(self) -> None:
        self.refresh()
        while not self._stopping.wait(self.refresh_seconds):
            self.refresh()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        builds = GaugeMetricFamily("envstore_builds", "Builds by state", labels=["status"])
        for status in BuildStatus:
            builds.add_metric([status.value], self._builds.get(status.value, 0))
        yield builds
        depth = GaugeMetricFamily(
            "envstore_queue_depth",
            "Jobs waiting: builds QUEUED in the database, and messages in each broker queue",
            labels=["queue"],
        )
        depth.add_metric(["database"], self._builds.get(BuildStatus.QUEUED.value, 0))
        for name, count in sorted(self._queues.items()):
            depth.add_metric([name], count)
        yield depth
        pool = self.engine.pool
        if isinstance(pool, QueuePool):
            used = GaugeMetricFamily(
                "envstore_db_pool_connections", "Database pool connections", labels=["state"]
            )
            used.add_metric(["in_use"], pool.checkedout())
            used.add_metric(["idle"], pool.checkedin())
            used.add_metric(["overflow"], max(pool.overflow(), 0))
            yield used
            yield GaugeMetricFamily(
                "envstore_db_pool_size", "Database pool size (without overflow)", pool.size()
            )


class MetricsMiddleware:
    """Times every HTTP request; pure ASGI, so it costs no extra task per request."""

    def __init__(self, app: Asgi, metrics: ApiMetrics) -> None:
        self.app = app
        self.histogram = metrics.latency
        # id(route) -> its template: create_app includes every router once, so a route has one
        # template, and the search of _template runs once per route, not on every request
        # (routes are unhashable, and live as long as the app)
        self.templates: dict[int, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.histogram.labels(scope["method"], self._template(scope), str(status)).observe(
                time.perf_counter() - started
            )

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return "unmatched"
        found = self.templates.get(id(route))
        if found is None:
            found = _template(scope)
            if found != "unmatched":
                self.templates[id(route)] = found
        return found


def _template(scope: Scope) -> str:
    """The matched route's template with the prefix it was included under.

    The route in the scope may be the one declared in its router, whose template lacks the
    ``include_router`` prefix: that prefix is the part of the path before the route matches.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if template is None or regex is None:
        return "unmatched"
    path: str = scope.get("path", "")
    start = 0
    while start != -1:
        if regex.match(path[start:]):
            return path[:start] + str(template)
        start = path.find("/", start + 1)
    return str(template)
