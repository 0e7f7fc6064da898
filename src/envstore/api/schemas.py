"""Response shapes of the v1 API (API.md) and the envelopes around them.

Serialisation is by hand into plain dicts: it is on every read path, and these objects are
simple. Datetimes are ISO-8601 in UTC without an offset, as the conda-store UI expects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from envstore.db.models import Build, Channel, Environment, Namespace, Package, Specification
from envstore.services.common import Page
from envstore.storage.layout import StoreLayout

__all__ = [
    "EnvironmentUpdate",
    "NamespaceUpdate",
    "SpecificationCreate",
    "build_out",
    "environment_out",
    "ok",
    "ok_page",
    "package_out",
]


class SpecificationCreate(BaseModel):
    specification: str = Field(
        description="environment.yaml text, a requirements list or a lockfile"
    )
    namespace: str | None = None
    environment_name: str | None = None
    environment_description: str | None = None
    is_lockfile: bool = False
    as_of: datetime | None = Field(default=None, description="solve as of this date (UTC)")


class EnvironmentUpdate(BaseModel):
    build_id: int | None = None
    description: str | None = None


class NamespaceUpdate(BaseModel):
    metadata: dict[str, Any] | None = None
    role_mappings: list[dict[str, Any]] | dict[str, Any] | None = None


def ok(data: Any = None, message: str | None = None) -> dict[str, Any]:
    return {"status": "ok", "data": data, "message": message}


def ok_page(page: Page[Any], items: list[Any]) -> dict[str, Any]:
    return {
        "status": "ok",
        "data": items,
        "message": None,
        "page": page.page,
        "size": page.size,
        "count": page.count,
    }


def ts(value: datetime | None) -> str | None:
    return value.replace(tzinfo=None).isoformat() if value is not None else None


def namespace_out(ns: Namespace, *, full: bool = False) -> dict[str, Any]:
    if not full:
        return {"id": ns.id, "name": ns.name}
    return {"id": ns.id, "name": ns.name, "metadata_": ns.metadata_ or {}, "role_mappings": []}


def specification_out(spec: Specification) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "spec": spec.spec,
        "sha256": spec.sha256,
        "created_on": ts(spec.created_on),
        "kind": spec.kind,
    }


def build_out(
    build: Build, layout: StoreLayout | None = None, *, summary: bool = False
) -> dict[str, Any]:
    """A build; ``summary`` leaves out the parts that need extra queries (inside lists of envs)."""
    data: dict[str, Any] = {
        "id": build.id,
        "environment_id": build.environment_id,
        "status": build.status,
        "status_info": build.status_info,
        "size": int(build.size or 0),
        "scheduled_on": ts(build.scheduled_on),
        "started_on": ts(build.started_on),
        "ended_on": ts(build.ended_on),
        "build_key": build.build_key,
        "attempt": build.attempt,
        "as_of": ts(build.as_of),
        "python_version": build.python_version,
    }
    if summary:
        return data
    data["specification"] = specification_out(build.specification)
    data["build_artifacts"] = [
        {
            "id": a.id,
            "artifact_type": a.artifact_type,
            "key": _artifact_key(a.artifact_type, a.key, build.id),
        }
        for a in build.artifacts
    ]
    env = build.environment
    data["environment"] = {"namespace": env.namespace.name, "name": env.name}
    if layout is not None and build.status == "COMPLETED" and build.build_key:
        data["prefix"] = str(layout.prefix(env.namespace.name, build.build_key))
    else:
        data["prefix"] = None
    return data


def _artifact_key(kind: str, key: str, build_id: int) -> str:
    # Storage keys are internal; clients get the route that serves the artifact.
    routes = {"LOCKFILE": "lockfile/", "YAML": "yaml/", "LOGS": "logs/"}
    return f"build/{build_id}/{routes[kind]}" if kind in routes else key


def environment_out(env: Environment) -> dict[str, Any]:
    current = env.current_build
    return {
        "id": env.id,
        "namespace": namespace_out(env.namespace),
        "name": env.name,
        "current_build_id": env.current_build_id,
        "current_build": build_out(current, summary=True) if current is not None else None,
        "description": env.description,
    }


def channel_out(channel: Channel) -> dict[str, Any]:
    return {"id": channel.id, "name": channel.name, "last_update": ts(channel.last_update)}


def package_out(pkg: Package, requested: bool | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": pkg.id,
        "channel": channel_out(pkg.channel),
        "license": pkg.license,
        "name": pkg.name,
        "version": pkg.version,
        "summary": pkg.summary,
        "build": pkg.build,
        "manager": pkg.manager,
        "sha256": pkg.sha256,
        "url": pkg.url,
    }
    if requested is not None:
        data["requested"] = requested
    return data
