"""Channel names and URLs: one canonical URL per channel, and redaction for messages.

A specification names channels the way conda users write them (``conda-forge``,
``bioconda/label/dev``, ``https://host/channel``, ``file:///srv/channel``). Everything
downstream (repodata cache, lockfile, package records, policy allow-lists) must see one
canonical URL per channel, so the same channel written two ways is one channel. Credentials
that may sit in a URL (``user:pass@`` or an anaconda.org ``/t/<token>/`` segment) are stripped
by :func:`redact` before a URL reaches a log line or an error message. Pure: the policy (in
``core``) and the conda backend share these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from envstore.errors import InvalidSpec

__all__ = ["channel_for_url", "channel_url", "channel_urls", "redact"]

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
