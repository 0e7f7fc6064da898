"""``/build/{id}/archive/``, ``/docker/``, ``/explicit/``, ``/artifacts/`` (make the archive and
image again) and ``/build/{a}/diff/{b}/``.

Downloads stream through the API after the blob is verified (local store) or answer 307 to a
short-lived presigned URL (S3); there is no static mount of the store.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from envstore.api.deps import DbSession, On, Require, State, require_build
from envstore.api.params import Id
from envstore.api.schemas import JSONBody, ok
from envstore.api.waiting import ArtifactWait
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.services import builds as svc
from envstore.services.artifacts import artifact_digest, explicit_text
from envstore.services.diff import diff_builds
from envstore.services.packing import rebuild_artifacts
from envstore.storage.blobstore import BlobStore

__all__ = ["blob_response", "router"]

router = APIRouter(tags=["artifacts"])

# Artifacts are read with the build: environment::read on its namespace/environment.
BuildReader = Annotated[Principal, Require(Permission.ENV_READ, On.BUILD)]


def blob_response(
    blobs: BlobStore,
    digest: str,
    size: int,
    *,
    media_type: str,
    filename: str | None = None,
    head: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    """The blob: a 307 to the object store when it can sign a URL, else streamed verified."""
    extra = dict(headers or {})
    if filename:
        extra["Content-Disposition"] = f'attachment; filename="{filename}"'
    url = blobs.download_url(digest, filename or digest, media_type)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers=extra)
    if head:
        extra["Content-Length"] = str(size)
        return Response(b"", media_type=media_type, headers=extra)
    chunks = blobs.iter_verified(digest)  # raises CorruptBlob before any byte is sent (D5)
    extra["Content-Length"] = str(size)
    return StreamingResponse(chunks, media_type=media_type, headers=extra)


@router.get("/build/{build_id}/archive/")
def build_archive(
    db: DbSession, _who: BuildReader, state: State, build_id: Id, _waited: ArtifactWait
) -> Response:
    """The relocatable archive; while it is being made (after the build), the request waits
    for it up to ``wait`` seconds, then answers 404 naming the state."""
    digest, size = artifact_digest(db, build_id, "CONDA_PACK")
    return blob_response(
        state.blobs,
        digest,
        size,
        media_type="application/gzip",
        filename=f"build-{build_id}.tar.gz",
    )


@router.get("/build/{build_id}/docker/")
def build_docker(
    db: DbSession,
    _who: BuildReader,
    state: State,
    request: Request,
    build_id: Id,
    _waited: ArtifactWait,
) -> JSONBody:
    """The pull reference of the build's image in this server's registry (``/v2/``)."""
    build = svc.load_build(db, build_id)
    digest, _ = artifact_digest(db, build_id, "DOCKER_MANIFEST")
    repository = f"{request.url.netloc}/{build.namespace}/{build.environment}"
    return ok(
        {
            "image": f"{repository}:{build.build_key}",
            "digest": f"sha256:{digest}",
            "pinned": f"{repository}@sha256:{digest}",
            "latest": f"{repository}:latest",
        }
    )


@router.put("/build/{build_id}/artifacts/")
def rebuild_build_artifacts(
    db: DbSession,
    _who: Annotated[Principal, Require(Permission.ENV_UPDATE, On.BUILD)],
    state: State,
    build_id: Id,
) -> JSONBody:
    """Make the archive and image of a COMPLETED build again (after a failed pack job)."""
    status = rebuild_artifacts(db, state.settings, build_id)
    if state.queue is not None:
        state.queue.notify_artifacts(build_id)
    state.events.changed(build_id)
    return ok(
        {"build_id": build_id, "artifacts_status": status.value},
        f"artifacts of build {build_id}: {status.value}",
    )


@router.get("/build/{build_id}/explicit/", response_class=PlainTextResponse)
def build_explicit(
    db: DbSession, _who: BuildReader, state: State, build_id: Id
) -> PlainTextResponse:
    return PlainTextResponse(explicit_text(db, state.blobs, build_id), media_type="text/plain")


@router.get("/build/{build_id}/diff/{other_id}/")
def build_diff(db: DbSession, who: BuildReader, build_id: Id, other_id: Id) -> JSONBody:
    """Packages added, removed and changed from build ``build_id`` to build ``other_id``."""
    require_build(db, who, Permission.ENV_READ, other_id)
    svc.load_build(db, other_id)
    return ok(diff_builds(db, build_id, other_id))
