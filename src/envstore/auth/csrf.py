"""Cross-site request forgery checks (A9): where a request comes from, and what it sends.

A browser attaches the login cookie to requests that other sites' pages make (forms, ``fetch``
without CORS). Such a request is recognised by its ``Origin`` (or, where a browser leaves it
out, the origin of its ``Referer``), which every current browser sends on cross-origin
requests, and by its content type: a page of another site can send a form, ``text/plain`` or
multipart body without asking, but ``application/json`` only after a CORS preflight that this
server refuses unless the origin is in ``ENVSTORE_CORS_ORIGINS``.

These functions are pure (headers in, verdict out) so that the API's middleware and the web
UI's own form checks share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

__all__ = ["CSRF_HEADER", "is_json", "normalise_origin", "request_origin", "trusted_origin"]

CSRF_HEADER = "x-csrf-token"
_DEFAULT_PORTS = (":80", ":443")


def _netloc(value: str) -> str:
    value = value.strip().lower()
    for port in _DEFAULT_PORTS:
        if value.endswith(port):
            return value[: -len(port)]
    return value


def normalise_origin(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower case, default ports left out; None when the
    value is not an absolute http(s) URL (``null``, a path, garbage)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{_netloc(parts.netloc)}"


def request_origin(headers: Mapping[str, str]) -> str | None:
    """Where a request says it comes from: its ``Origin``, else its ``Referer`` (scheme, host
    and port only); ``"null"`` for an opaque or unreadable one; None when it names neither."""
    for name in ("origin", "referer"):
        value = headers.get(name)
        if value:
            return normalise_origin(value) or "null"
    return None


def trusted_origin(headers: Mapping[str, str], allowed_origins: Iterable[str] = ()) -> bool | None:
    """Whether the request's origin is this server (the ``Host`` it was sent to) or one of
    ``allowed_origins``; None when the request names no origin at all (not a browser's
    cross-site request: browsers name it)."""
    origin = request_origin(headers)
    if origin is None:
        return None
    if origin == "null":
        return False
    if origin in {normalise_origin(o) for o in allowed_origins}:
        return True
    host = headers.get("host")
    return host is not None and origin.partition("://")[2] == _netloc(host)


def is_json(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type, parameters ignored."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
