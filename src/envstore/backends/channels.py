"""Channel URL handling for the conda backend: names to URLs, normalisation, redaction.

A specification names channels the way conda users write them (``conda-forge``,
``bioconda/label/dev``, ``https://host/channel``, ``file:///srv/channel``). Everything
downstream (repodata cache, lockfile, package records, policy allow-lists) must see one
canonical URL per channel, so the same channel written two ways is one channel. Credentials
that may sit in a URL (``user:pass@`` or an anaconda.org ``/t/<token>/`` segment) are stripped
by :func:`redact` before a URL reaches a log line or an error message. Credentials from the
settings (a token or a username/password per channel URL prefix) never enter a URL: they are
sent as an ``Authorization`` header by the rattler client that :func:`make_client` builds.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from envstore.errors import InvalidSpec

if TYPE_CHECKING:
    import rattler

__all__ = [
    "Credentials",
    "auth_header",
    "channel_for_url",
    "channel_url",
    "channel_urls",
    "make_client",
    "redact",
]

# channel URL prefix -> {"token": ...} or {"username": ..., "password": ...}
Credentials = Mapping[str, Mapping[str, str]]

_SCHEMES = ("https", "http", "file")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
_TOKEN = re.compile(r"/t/[^/]+/")


def channel_url(channel: str, channel_alias: str = "https://conda.anaconda.org/") -> str:
    """The canonical URL (with one trailing slash) of a channel name or URL.

    Names resolve against ``channel_alias``; ``defaults`` is refused because its meaning depends
    on a client's configuration, which a reproducible build must not.
    """
    value = channel.strip()
    if "://" in value:
        return _normalise_url(value, channel)
    if value.lower() == "defaults":
        raise InvalidSpec("channel 'defaults' is ambiguous; name the channel URL instead")
    if not _NAME.match(value):
        raise InvalidSpec(f"invalid channel name {channel!r}")
    alias = _normalise_url(channel_alias, channel_alias)
    return f"{alias}{value}/"


def channel_urls(channels: Iterable[str], channel_alias: str) -> list[str]:
    """Canonical URLs in the given order, duplicates (after normalisation) dropped."""
    seen: dict[str, None] = {}
    for channel in channels:
        seen.setdefault(channel_url(channel, channel_alias), None)
    return list(seen)


def channel_for_url(package_url: str, channels: Iterable[str]) -> str | None:
    """The channel (from ``channels``) a package URL belongs to, if any.

    The longest matching channel wins, so ``.../conda-forge/label/dev/`` is not mistaken for
    ``.../conda-forge/``.
    """
    matches = [url for url in channels if package_url.startswith(url)]
    return max(matches, key=len) if matches else None


def redact(url: str) -> str:
    """``url`` without a password, user or anaconda.org token, for logs and messages."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = _TOKEN.sub("/t/<token>/", parts.path)
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def _normalise_url(value: str, original: str) -> str:
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidSpec(f"channel {original!r} uses an unsupported scheme {parts.scheme!r}")
    if scheme != "file" and not parts.netloc:
        raise InvalidSpec(f"channel {original!r} has no host")
    if parts.query or parts.fragment:
        raise InvalidSpec(f"channel {original!r} may not carry a query or fragment")
    path = re.sub(r"/{2,}", "/", parts.path).rstrip("/")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidSpec(f"channel {original!r} may not contain '.' or '..' segments")
    netloc = parts.netloc.lower() if "@" not in parts.netloc else parts.netloc
    return urlunsplit((scheme, netloc, f"{path}/", "", ""))


def auth_header(host: str, path: str, credentials: Credentials) -> dict[str, str] | None:
    """The ``Authorization`` header for a request to ``host`` + ``path``, if a prefix matches.

    The longest matching prefix wins, so a token for ``https://host/private/`` is preferred to
    one for ``https://host/`` on that channel. rattler hands the middleware the host name only
    (no scheme, no port), so those parts of a prefix are not compared.
    """
    best: tuple[int, Mapping[str, str]] | None = None
    for prefix, secret in credentials.items():
        parts = urlsplit(prefix)
        want_host = (parts.hostname or "").lower()
        want_path = parts.path.rstrip("/")
        if host.lower() != want_host or not (path == want_path or path.startswith(want_path + "/")):
            continue
        if best is None or len(want_path) > best[0]:
            best = (len(want_path), secret)
    if best is None:
        return None
    secret = best[1]
    if "token" in secret:
        return {"Authorization": f"Bearer {secret['token']}"}
    pair = f"{secret['username']}:{secret['password']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


_CLIENTS: dict[str, rattler.Client] = {}
_MAX_CLIENTS = 8


def make_client(credentials: Credentials) -> rattler.Client:
    """A rattler HTTP client that authenticates to the channels named in ``credentials``.

    Clients are kept per set of credentials: making one takes ~4 ms (a fifth of what a warm
    runner adds to rattler's own install), and a kept one also keeps its connections open.
    """
    import rattler
    from rattler.networking import AddHeadersMiddleware

    frozen = {prefix: dict(secret) for prefix, secret in credentials.items()}
    key = json.dumps(frozen, sort_keys=True)
    client = _CLIENTS.get(key)
    if client is None:
        if len(_CLIENTS) >= _MAX_CLIENTS:
            _CLIENTS.clear()
        auth = AddHeadersMiddleware(lambda h, p: auth_header(h, p, frozen))
        client = rattler.Client([auth]) if frozen else rattler.Client()
        _CLIENTS[key] = client
    return client
