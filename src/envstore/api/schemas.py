"""Response shapes of the v1 API (API.md) and the envelopes around them.

Serialisation is by hand into plain dicts: it is on every read path, and these objects are
simple. Datetimes are ISO-8601 in UTC without an offset, as the conda-store UI expects.
The envelopes are :class:`JSONBody` responses, which a route returns as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter

from envstore.db.models import Channel, Namespace
from envstore.services.common import Page
from envstore.services.views import (
    BuildSummary,
    BuildView,
    ChannelView,
    EnvironmentView,
    PackageView,
    SpecificationView,
)
from envstore.storage.layout import StoreLayout

__all__ = [
    "EnvironmentUpdate",
    "JSONBody",
    "NamespaceUpdate",
    "SpecificationCreate",
    "build_out",
    "environment_out",
    "ok",
    "ok_page",
    "package_out",
]

_ENVELOPE = TypeAdapter(dict[str, Any])


class JSONBody(Response):
    """An ``application/json`` response with the bytes FastAPI makes of a route's
    ``dict[str, Any]`` return value (the same pydantic-core serialiser), without FastAPI's
    validation pass over that value: for a ``def`` route that pass is one more thread-pool hop
    per request, and the bodies here are built by hand from known types."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _ENVELOPE.dump_json(content, by_alias=True)


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
    build_id: int | None = Field(default=None, ge=1, le=2**31 - 1)  # params.MAX_ID
    description: str | None = None


class NamespaceUpdate(BaseModel):
    metadata: dict[str, Any] | None = None
    role_mappings: list[dict[str, Any]] | dict[str, Any] | None = None


def ok(data: Any = None, message: str | None = None) -> JSONBody:
    return JSONBody({"status": "ok", "data": data, "message": message})


def ok_page(page: Page[Any], items: list[Any]) -> JSONBody:
    return JSONBody(
        {
            "status": "ok",
            "data": items,
            "message": None,
            "page": page.page,
            "size": page.size,
            "count": page.count,
        }
    )


def ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    # Stored datetimes are naive UTC already; replace() would copy each (~1 us, 5 per build).
    return (value if value.tzinfo is None else value.replace(tzinfo=None)).isoformat()


def namespace_out(ns: Namespace, *, full: bool = False) -> dict[str, Any]:
    if not full:
        return {"id": ns.id, "name": ns.name}
    return {"id": ns.id, "name": ns.name, "metadata_": ns.metadata_ or {}, "role_mappings": []}


def specification_out(spec: SpecificationView) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "spec": spec.spec,
        "sha256": spec.sha256,
        "created_on": ts(spec.created_on),
        "kind": spec.kind,
    }


def build_summary_out(build: BuildSummary | BuildView) -> dict[str, Any]:
    """A build's own fields: all that lists of environments show of their current builds."""
    return {
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
        "submitted_by": build.submitted_by,
    }


def build_out(build: BuildView, layout: StoreLayout) -> dict[str, Any]:
    data = build_summary_out(build)
    data["specification"] = specification_out(build.specification)
    # what was built: the submitted spec after policy, and each addition with its setting/level
    data["effective_specification"] = build.effective_spec
    data["policy_additions"] = build.policy_additions or []
    data["build_artifacts"] = [
        {
            "id": a.id,
            "artifact_type": a.artifact_type,
            "key": _artifact_key(a.artifact_type, a.key, build.id),
        }
        for a in build.artifacts
    ]
    # The archive and image are made after COMPLETED: QUEUED, PACKING, COMPLETED or FAILED
    # (with the reason in artifacts_status_info); null when the build has no pack job.
    data["artifacts_status"] = build.artifacts_status
    data["artifacts_status_info"] = build.artifacts_info
    data["environment"] = {"namespace": build.namespace, "name": build.environment}
    data["prefix"] = None
    if build.status == "COMPLETED" and build.build_key:
        # where the worker recorded it (an older store's builds stay in the older layout)
        recorded = [a.key for a in build.artifacts if a.artifact_type == "DIRECTORY"]
        data["prefix"] = str(
            layout.store_dir / recorded[0]
            if recorded
            else layout.prefix(build.namespace, build.build_key)
        )
    return data


_ARTIFACT_ROUTES = {"LOCKFILE": "lockfile/", "YAML": "yaml/", "LOGS": "logs/"}


def _artifact_key(kind: str, key: str, build_id: int) -> str:
    # Storage keys are internal; clients get the route that serves the artifact.
    route = _ARTIFACT_ROUTES.get(kind)
    return f"build/{build_id}/{route}" if route is not None else key


def environment_out(env: EnvironmentView) -> dict[str, Any]:
    current = env.current_build
    return {
        "id": env.id,
        "namespace": {"id": env.namespace_id, "name": env.namespace},
        "name": env.name,
        "current_build_id": env.current_build_id,
        "current_build": build_summary_out(current) if current is not None else None,
        "description": env.description,
    }


def channel_out(channel: Channel | ChannelView) -> dict[str, Any]:
    return {"id": channel.id, "name": channel.name, "last_update": ts(channel.last_update)}


def package_out(pkg: PackageView, requested: bool | None = None) -> dict[str, Any]:
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
