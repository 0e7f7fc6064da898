"""The HTTP client of the envstore CLI: one method per REST route the CLI uses.

The CLI talks to the server over HTTP only (ARCHITECTURE.md), so this module is the whole
boundary between the command functions and the server. It unwraps the ``{"status", "data"}``
envelope of API.md and turns every failure into a member of :mod:`envstore.errors`, so the
commands never see an ``httpx`` exception or a status code; ``main`` maps the error classes to
exit codes. Only :class:`ServerError` is added here, because the domain tree has no class for
"the server broke" (that never happens on purpose server-side).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from envstore.errors import (
    Conflict,
    EnvstoreError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)

__all__ = [
    "DEFAULT_URL",
    "LOG_OFFSET_HEADER",
    "EnvstoreClient",
    "LogChunk",
    "ServerError",
    "anonymous_hint",
    "error_from_response",
]

DEFAULT_URL = "http://localhost:8080"
LOG_OFFSET_HEADER = "X-Envstore-Log-Offset"
# Lists are paged by the server at 100 items at most (API.md); the CLI asks for full pages.
_PAGE_SIZE = 100
_MAX_MESSAGE = 500

_CLASS_BY_STATUS: dict[int, type[EnvstoreError]] = {
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}

JSONDict = dict[str, Any]


class ServerError(EnvstoreError):
    """The server answered with a 5xx status: a fault on its side, not in the request."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LogChunk:
    """A slice of a build log and the byte offset to ask for next."""

    data: bytes
    next_offset: int


def error_from_response(
    response: httpx.Response, *, anonymous_at: str | None = None
) -> EnvstoreError:
    """Build the typed error for a non-2xx answer, keeping the server's message on one line.

    Unknown 4xx statuses (400, 413, 422, 429...) are the request's fault, so they become
    :class:`InvalidInput`; 503 is a retryable :class:`Unavailable`; any other 5xx is a
    :class:`ServerError`. ``anonymous_at`` is the server URL when the request carried no
    token: a 403 then says so, and how to sign in, since that is its usual cause.
    """
    status = response.status_code
    message = _one_line(_message_of(response)) or f"HTTP {status} {response.reason_phrase}"
    if status == 403 and anonymous_at is not None:
        return Forbidden(f"{message}: {anonymous_hint(anonymous_at)}")
    if status == 503:
        retry = response.headers.get("Retry-After", "")
        return Unavailable(message, retry_after=int(retry) if retry.isdigit() else 5)
    if status >= 500:
        return ServerError(message, status=status)
    error_class = _CLASS_BY_STATUS.get(status, InvalidInput)
    return error_class(message)


def anonymous_hint(url: str) -> str:
    """Why a request without a token was refused, and the command that fixes it."""
    url = url.rstrip("/")
    option = "" if url == DEFAULT_URL else f" --url {url}"
    return (
        f"you are anonymous (no token kept for {url}); sign in with: "
        f"envstore{option} login --username NAME --password-stdin"
    )


def _message_of(response: httpx.Response) -> str:
    """The human part of an error body: ``message``, FastAPI's ``detail``, or the raw text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text
    if not isinstance(body, dict):
        return str(body)
    message = body.get("message")
    if isinstance(message, str) and message:
        return message
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_validation_item(item) for item in detail)
    return ""


def _validation_item(item: Any) -> str:
    """One FastAPI validation error as ``body.field: reason``."""
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", ()))
    reason = str(item.get("msg", "invalid"))
    return f"{location}: {reason}" if location else reason


def _one_line(text: str) -> str:
    """Collapse whitespace so an error prints on exactly one terminal line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_MESSAGE else flat[: _MAX_MESSAGE - 3] + "..."


def _segment(value: str) -> str:
    """Quote a path segment; names are validated already, this is belt and braces."""
    return quote(value, safe="")


class EnvstoreClient:
    """Calls ``{url}/api/v1/...`` and returns the envelope's ``data``.

    ``url`` may carry the server's ``ENVSTORE_URL_PREFIX`` path (``https://host/envstore``).
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/") or DEFAULT_URL
        self._anonymous_at = None if token else self.url
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Artifacts may answer 307 to the blob store (API.md), so redirects are followed.
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1/",
            headers=headers,
            timeout=timeout,
            follow_redirects=True,
        )

    @property
    def anonymous(self) -> bool:
        """True when requests carry no token (the server sees an anonymous caller)."""
        return self._anonymous_at is not None

    def __enter__(self) -> EnvstoreClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    # -- transport ---------------------------------------------------------------------------

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn transport failures into :class:`Unavailable` naming the URL the user set."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise Unavailable(f"envstore at {self.url} did not answer in time: {exc}") from None
        except httpx.HTTPError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise Unavailable(f"cannot reach envstore at {self.url}: {reason}") from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        with self._translate():
            response = self._http.request(method, path, params=params, json=body)
        if response.is_success:
            return response
        raise error_from_response(response, anonymous_at=self._anonymous_at)

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> JSONDict:
        response = self._request(method, path, params=params, body=body)
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ServerError(
                f"{method} {path} answered something other than JSON",
                status=response.status_code,
            ) from None
        if not isinstance(payload, dict):
            raise ServerError(f"{method} {path} answered an unexpected body", status=200)
        return payload

    def _data(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        return self._json(method, path, params=params, body=body).get("data")

    def _paged(self, path: str, params: Mapping[str, Any], limit: int) -> list[JSONDict]:
        """Collect up to ``limit`` items (0: all) across pages."""
        items: list[JSONDict] = []
        page = 1
        while True:
            query = {**{k: v for k, v in params.items() if v not in (None, "")}}
            query |= {"page": page, "size": _PAGE_SIZE}
            payload = self._json("GET", path, params=query)
            batch = payload.get("data") or []
            items.extend(batch)
            total = int(payload.get("count", len(items)))
            if not batch or len(items) >= total or (limit and len(items) >= limit):
                return items[:limit] if limit else items
            page += 1

    # -- specifications and environments -----------------------------------------------------

    def submit_specification(
        self,
        specification: str,
        *,
        environment_name: str,
        namespace: str | None = None,
        description: str | None = None,
        is_lockfile: bool = False,
        as_of: str | None = None,
    ) -> tuple[int, bool]:
        """POST the spec text as is; return the id of the build that will produce it, and
        whether that build was already there (the spec is unchanged)."""
        body: JSONDict = {
            "specification": specification,
            "environment_name": environment_name,
            "is_lockfile": is_lockfile,
        }
        if namespace is not None:
            body["namespace"] = namespace
        if description is not None:
            body["environment_description"] = description
        if as_of is not None:
            body["as_of"] = as_of
        data = self._data("POST", "specification/", body=body)
        return _build_id(data), bool(isinstance(data, dict) and data.get("unchanged"))

    def list_environments(
        self,
        *,
        namespace: str | None = None,
        search: str | None = None,
        packages: tuple[str, ...] = (),
        limit: int = 0,
    ) -> list[JSONDict]:
        """Environments visible to the caller, optionally filtered (``packages``: whose
        current build contains every one of these, conda or PyPI)."""
        params: dict[str, Any] = {"namespace": namespace, "search": search}
        if packages:
            params["packages"] = list(packages)
        return self._paged("environment/", params, limit)

    def get_environment(self, namespace: str, name: str) -> JSONDict:
        """One environment with its current build."""
        data: JSONDict = self._data("GET", _env_path(namespace, name))
        return data

    def set_current_build(self, namespace: str, name: str, build_id: int) -> str:
        """Switch the environment to ``build_id`` (rollback); return the server's message."""
        payload = self._json("PUT", _env_path(namespace, name), body={"build_id": build_id})
        return str(payload.get("message") or "")

    def delete_environment(self, namespace: str, name: str) -> str:
        """Delete the environment; return the server's message."""
        return str(self._json("DELETE", _env_path(namespace, name)).get("message") or "")

    def resolve(self, namespace: str, name: str, selector: str = "") -> JSONDict:
        """The build a ``NS/NAME@selector`` reference names (current build when empty)."""
        path = f"resolve/{_segment(namespace)}/{_segment(name)}/"
        data: JSONDict = self._data("GET", path, params={"ref": selector})
        return data

    def environment_lockfile(self, namespace: str, name: str) -> str:
        """The conda-lock YAML of the environment's current build."""
        return self._request("GET", _env_path(namespace, name) + "lockfile/").text

    # -- builds ------------------------------------------------------------------------------

    def list_builds(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        status: str | None = None,
        limit: int = 0,
    ) -> list[JSONDict]:
        """Builds visible to the caller, newest first, optionally of one environment or state.

        Newest first so that ``limit`` keeps the most recent builds.
        """
        params = {
            "namespace": namespace,
            "name": name,
            "status": status,
            "sort_by": "id",
            "order": "desc",
        }
        return self._paged("build/", params, limit)

    def package_count(self, build_id: int) -> int:
        """How many packages (conda and pip) a build recorded."""
        payload = self._json("GET", f"build/{build_id}/packages/", params={"size": 1})
        return int(payload.get("count") or 0)

    def get_build(self, build_id: int, wait: float = 0) -> JSONDict:
        """One build, with the envstore fields (``build_key``, ``prefix``, ``environment``).

        ``wait``: an unfinished build is answered when its status changes, or after ``wait``
        seconds (a server without long polls answers at once).
        """
        params = {"wait": wait} if wait else None
        data: JSONDict = self._data("GET", f"build/{build_id}/", params=params)
        return data

    def rebuild(self, build_id: int) -> int:
        """Queue a new build of the same specification; return its id."""
        return _build_id(self._data("PUT", f"build/{build_id}/"))

    def rebuild_artifacts(self, build_id: int) -> str:
        """Queue the archive and image of a COMPLETED build again; return the pack state."""
        data = self._data("PUT", f"build/{build_id}/artifacts/")
        return str(data.get("artifacts_status") or "") if isinstance(data, dict) else ""

    def cancel_build(self, build_id: int) -> str:
        """Ask the server to cancel; return its message."""
        return str(self._json("PUT", f"build/{build_id}/cancel/").get("message") or "")

    def build_logs(self, build_id: int, offset: int = 0, wait: float = 0) -> LogChunk:
        """The log from byte ``offset``; the server says where the next read starts.

        ``wait``: while the build runs and the log has nothing past ``offset``, the server
        answers when it grows, or after ``wait`` seconds.
        """
        params: dict[str, Any] = {"offset": offset}
        if wait:
            params["wait"] = wait
        response = self._request("GET", f"build/{build_id}/logs/", params=params)
        data = response.content
        header = response.headers.get(LOG_OFFSET_HEADER, "")
        next_offset = int(header) if header.isdigit() else offset + len(data)
        return LogChunk(data=data, next_offset=next_offset)

    def build_has_package(self, build_id: int, name: str) -> bool:
        """Whether the build's recorded packages (conda or PyPI) include ``name``."""
        params = {"search": name, "exact": "true", "size": 1}
        return int(self._json("GET", f"build/{build_id}/packages/", params=params)["count"]) > 0

    def download_archive(self, build_id: int, write: Callable[[bytes], object]) -> int:
        """Stream the build's relocatable archive to ``write``; return the bytes written."""
        written = 0
        with self._translate(), self._http.stream("GET", f"build/{build_id}/archive/") as answer:
            if not answer.is_success:
                answer.read()
                raise error_from_response(answer)
            for chunk in answer.iter_bytes(1 << 20):
                write(chunk)
                written += len(chunk)
        return written

    def build_lockfile(self, build_id: int) -> str:
        """The conda-lock YAML of one build."""
        return self._request("GET", f"build/{build_id}/lockfile/").text

    # -- identity ----------------------------------------------------------------------------

    def login(
        self, username: str, password: str, *, token_name: str, namespace: str | None = None
    ) -> str:
        """Sign in with a password (cookie) and trade the session for a new API token."""
        with self._translate():
            response = self._http.post(
                f"{self.url}/login/", json={"username": username, "password": password}
            )
        if not response.is_success:
            raise error_from_response(response)
        body: JSONDict = {"name": token_name}
        if namespace is not None:
            body["primary_namespace"] = namespace
        data = self._data("POST", "token/", body=body)
        self._http.cookies.clear()
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise ServerError("the server did not hand out a token", status=200)
        return str(data["token"])

    def permissions(self) -> JSONDict:
        """Who the server takes us for (``/permission/``)."""
        data: JSONDict = self._data("GET", "permission/")
        return data

    def create_token(
        self,
        *,
        name: str = "",
        expiration: str | None = None,
        role_bindings: dict[str, list[str]] | None = None,
        namespace: str | None = None,
    ) -> JSONDict:
        body: JSONDict = {"name": name}
        if expiration is not None:
            body["expiration"] = expiration
        if role_bindings is not None:
            body["role_bindings"] = role_bindings
        if namespace is not None:
            body["primary_namespace"] = namespace
        data: JSONDict = self._data("POST", "token/", body=body)
        return data

    def list_tokens(self) -> list[JSONDict]:
        data = self._data("GET", "token/")
        return list(data or [])

    def revoke_token(self, token_id: int) -> str:
        return str(self._json("DELETE", f"token/{token_id}/").get("message") or "")

    # -- settings, policy, audit -------------------------------------------------------------

    def settings(self, level: tuple[str, ...]) -> JSONDict:
        """The whole answer of ``GET /setting/[NS/[ENV/]]``: merged data, sources, set_here."""
        return self._json("GET", _setting_path(level))

    def update_settings(self, level: tuple[str, ...], changes: Mapping[str, Any]) -> JSONDict:
        return self._json("PUT", _setting_path(level), body=dict(changes))

    def setting_history(self, level: tuple[str, ...], limit: int = 0) -> list[JSONDict]:
        return self._paged(_setting_path(level), {"history": "true"}, limit)

    def policy_check(self, namespace: str | None, environment: str | None) -> JSONDict:
        params = {"namespace": namespace or "", "environment": environment or ""}
        return self._json("GET", "/policy/check/", params=params)

    def audit(self, filters: Mapping[str, Any], limit: int = 0) -> list[JSONDict]:
        return self._paged("/audit/", filters, limit)


def _setting_path(level: tuple[str, ...]) -> str:
    return "/setting/" + "".join(f"{_segment(part)}/" for part in level)


def _env_path(namespace: str, name: str) -> str:
    return f"environment/{_segment(namespace)}/{_segment(name)}/"


def _build_id(data: Any) -> int:
    """Read ``{"build_id": N}`` from a submit or rebuild answer."""
    if isinstance(data, dict) and isinstance(data.get("build_id"), int):
        return int(data["build_id"])
    raise ServerError("the server did not say which build it queued", status=200)
