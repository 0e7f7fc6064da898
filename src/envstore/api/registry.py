"""A read-only OCI distribution registry at ``/v2/`` serving the images builds produce.

Repository ``<namespace>/<environment>``, tag = build key, ``latest`` = current build. Version
check, manifests (by tag or digest), blobs and tags list, GET and HEAD, with the media types and
``Docker-Content-Digest`` headers clients check. Errors use the registry's JSON error format.
The registry lives at the host root: distribution clients always ask for ``/v2/``.

Authentication follows the distribution spec (A13): where credentials would help, that is for
a caller who is anonymous (none sent, or an unknown, expired or revoked token), the answer is
``401`` with ``WWW-Authenticate: Basic realm="envstore"``, which makes ``docker``, ``podman``
and ``skopeo`` send the user name and an envstore API token as password (``docker login``,
``--creds``). The version check asks every anonymous caller, as Docker Hub does: a client
learns there that credentials are wanted, and one without any goes on anonymously. A signed-in
caller without the right gets ``403 DENIED``, the same whether the repository exists or not.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from envstore.api.deps import DbSession, On, Require, State
from envstore.api.routes.artifacts import blob_response
from envstore.artifacts.oci import MANIFEST_MEDIA_TYPE
from envstore.auth import Principal
from envstore.core.permissions import Permission
from envstore.errors import Forbidden, NotFound
from envstore.services import registry as svc
from envstore.storage.blobstore import check_digest

__all__ = ["router"]

_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
CHALLENGE = {**_VERSION, "WWW-Authenticate": 'Basic realm="envstore"'}


def _error(
    code: str, message: str, status: int = 404, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"errors": [{"code": code, "message": message, "detail": None}]}
    return JSONResponse(body, status_code=status, headers=headers or _VERSION)


def _unauthorized() -> JSONResponse:
    return _error(
        "UNAUTHORIZED",
        "authentication required: log in with your user name and an envstore API token",
        401,
        CHALLENGE,
    )


def _refusal(request: Request) -> JSONResponse:
    """401 + challenge for an anonymous caller, 403 DENIED for a signed-in one."""
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None or not who.authenticated:
        return _unauthorized()
    return _error("DENIED", "requested access to the resource is denied", 403)


class _RegistryRoute(APIRoute):
    """Answers refusals in the registry's error format, not the v1 API's envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Forbidden:
                return _refusal(request)

        return handle


router = APIRouter(
    prefix="/v2", tags=["registry"], include_in_schema=False, route_class=_RegistryRoute
)

Anyone = Annotated[Principal, Require(None, On.PUBLIC)]
Reader = Annotated[Principal, Require(Permission.ENV_READ, On.ENVIRONMENT)]


@router.api_route("/", methods=["GET", "HEAD"])
def version_check(who: Anyone) -> Response:
    if not who.authenticated:
        return _unauthorized()
    return JSONResponse({}, headers=_VERSION)


@router.api_route("/{namespace}/{name}/manifests/{reference}", methods=["GET", "HEAD"])
def manifest(
    db: DbSession,
    _who: Reader,
    state: State,
    request: Request,
    namespace: str,
    name: str,
    reference: str,
) -> Response:
    try:
        digest = svc.find_manifest(db, namespace, name, reference)
        body = state.blobs.get_bytes(digest)
    except NotFound as exc:
        return _error("MANIFEST_UNKNOWN", exc.message)
    headers = {**_VERSION, "Docker-Content-Digest": f"sha256:{digest}", "ETag": f'"{digest}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(b"", media_type=MANIFEST_MEDIA_TYPE, headers=headers)
    return Response(body, media_type=MANIFEST_MEDIA_TYPE, headers=headers)


@router.api_route("/{namespace}/{name}/blobs/{digest}", methods=["GET", "HEAD"])
def blob(
    db: DbSession,
    _who: Reader,
    state: State,
    request: Request,
    namespace: str,
    name: str,
    digest: str,
) -> Response:
    try:
        hex_digest = check_digest(digest.removeprefix("sha256:"))
        if not svc.repository_has_blob(db, state.blobs, namespace, name, hex_digest):
            raise NotFound(f"blob {digest} not found in {namespace}/{name}")
        size = state.blobs.size(hex_digest)
        headers = {**_VERSION, "Docker-Content-Digest": f"sha256:{hex_digest}"}
        return blob_response(
            state.blobs,
            hex_digest,
            size,
            media_type="application/octet-stream",
            head=request.method == "HEAD",
            headers=headers,
        )
    except NotFound as exc:
        return _error("BLOB_UNKNOWN", exc.message)


@router.get("/{namespace}/{name}/tags/list")
def tags_list(db: DbSession, _who: Reader, namespace: str, name: str) -> Response:
    try:
        tags = svc.repository_tags(db, namespace, name)
    except NotFound as exc:
        return _error("NAME_UNKNOWN", exc.message)
    return JSONResponse({"name": f"{namespace}/{name}", "tags": tags}, headers=_VERSION)
