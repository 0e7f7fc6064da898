"""The application's route table, flattened, and the permission each route declares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from envstore.api.deps import On, declared_permission
from envstore.core.permissions import Permission


def iter_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """``(method, full path, route)`` for every API route, included routers flattened."""

    def walk(routes: list[Any]) -> Iterator[tuple[str, Any]]:
        for route in routes:
            contexts = getattr(route, "effective_route_contexts", None)
            if contexts is not None:  # FastAPI >= 0.16x keeps included routers nested
                for context in contexts():
                    yield context.path, context.original_route
            else:
                yield getattr(route, "path", ""), route

    for path, route in walk(list(app.routes)):
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                yield method, path, route


def declarations(route: APIRoute) -> set[tuple[Permission | None, On]]:
    found: set[tuple[Permission | None, On]] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        declared = declared_permission(dep.call)
        if declared is not None:
            found.add(declared)
        stack.extend(dep.dependencies)
    return found
