"""Conda channel names and URLs: the canonical form, and the server's allow-list (I12).

A specification names channels the way conda users write them (``conda-forge``,
``bioconda/label/dev``, ``https://host/channel``, ``file:///srv/channel``). Everything
downstream sees one canonical URL per channel (lowercase scheme and host, one trailing slash),
so the same channel written two ways is one channel.

The build host fetches whatever a channel URL names, so channel URLs are a way to probe the
server's files and network. :class:`ChannelRules` is the safety net: a URL must start with an
entry of ``ENVSTORE_CHANNEL_ALLOW`` (default ``https://``). An entry is a scheme alone
(``https://``: any host of that scheme, except loopback, private, link-local and other
internal IP addresses and ``localhost``), or a scheme with a host (``http://mirror.lan``: that
host on any port; with a port, that port only) and optionally a path, which the channel must be
under (``file:///srv/channels/``). Channel *names* resolve against ``ENVSTORE_CHANNEL_ALIAS``,
which the administrator chose, and are allowed. Credentials that may sit in a URL
(``user:pass@`` or an anaconda.org ``/t/<token>/`` segment) are stripped by :func:`redact`
before a URL reaches a log line or an error message. Pure: no I/O (a host name is not
resolved); the request side, the policy and the conda backend share these functions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from envstore.errors import InvalidSpec

__all__ = [
    "DEFAULT_CHANNEL_ALLOW",
    "ChannelRules",
    "channel_for_url",
    "channel_url",
    "channel_urls",
    "redact",
]

DEFAULT_CHANNEL_ALLOW = ("https://",)
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
        raise InvalidSpec(
            f"invalid channel name {channel!r}: a name is letters, digits, '_', '.', '-' "
            "separated by '/', not starting with '.' or '-'; or give a URL"
        )
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
        raise InvalidSpec(
            f"channel {original!r} uses an unsupported scheme {parts.scheme!r} "
            "(https, http or file)"
        )
    if scheme != "file" and not parts.netloc:
        raise InvalidSpec(f"channel {original!r} has no host")
    if parts.query or parts.fragment:
        raise InvalidSpec(f"channel {original!r} may not carry a query or fragment")
    path = re.sub(r"/{2,}", "/", parts.path).rstrip("/")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidSpec(f"channel {original!r} may not contain '.' or '..' segments")
    netloc = parts.netloc.lower() if "@" not in parts.netloc else parts.netloc
    return urlunsplit((scheme, netloc, f"{path}/", "", ""))


@dataclass(frozen=True)
class _Entry:
    scheme: str
    host: str  # "" for a scheme alone
    port: int | None
    path: str  # with a trailing slash

    @classmethod
    def parse(cls, entry: str) -> _Entry:
        parts = urlsplit(entry.strip())
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES or "://" not in entry:
            raise ValueError(
                f"channel allow-list entry {entry!r} is not an http(s):// or file:// URL"
            )
        path = re.sub(r"/{2,}", "/", parts.path).rstrip("/") + "/"
        return cls(scheme, (parts.hostname or "").lower(), parts.port, path)

    def matches(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme != self.scheme or not parts.path.startswith(self.path):
            return False
        if self.scheme == "file" or not self.host:
            return not self.host or self.host == (parts.hostname or "")
        return self.host == (parts.hostname or "").lower() and self.port in (None, parts.port)


def _internal(host: str) -> bool:
    """A host a scheme-only entry must not reach: localhost or an internal IP literal."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a DNS name: not resolved here
    return not address.is_global or address.is_multicast


@dataclass(frozen=True)
class ChannelRules:
    """Where channel names resolve and which channel URLs are allowed (see the module doc)."""

    alias: str = "https://conda.anaconda.org/"
    allow: tuple[str, ...] = DEFAULT_CHANNEL_ALLOW

    def __post_init__(self) -> None:
        for entry in self.allow:
            _Entry.parse(entry)  # a bad setting fails at start, not at the first submit

    def url(self, channel: str) -> str:
        """The canonical URL of ``channel``; InvalidSpec naming it and the rule if refused."""
        url = channel_url(channel, self.alias)
        if "://" not in channel:
            return url  # a name: under the administrator's channel alias
        self.check_url(url, channel)
        return url

    def urls(self, channels: Iterable[str]) -> list[str]:
        seen: dict[str, None] = {}
        for channel in channels:
            seen.setdefault(self.url(channel), None)
        return list(seen)

    def check_url(self, url: str, shown: str | None = None) -> None:
        """InvalidSpec unless ``url`` (a canonical channel or package URL) is allowed."""
        shown = shown if shown is not None else url
        entries = [_Entry.parse(e) for e in self.allow]
        found = [e for e in entries if e.matches(url)]
        allowed = ", ".join(self.allow) or "(nothing)"
        if not found:
            raise InvalidSpec(
                f"channel {shown!r} is not allowed: channel URLs must start with one of "
                f"{allowed} (ENVSTORE_CHANNEL_ALLOW)"
            )
        host = urlsplit(url).hostname or ""
        if all(not e.host for e in found) and urlsplit(url).scheme != "file" and _internal(host):
            raise InvalidSpec(
                f"channel {shown!r} is not allowed: {host} is a local or internal address; "
                "only an ENVSTORE_CHANNEL_ALLOW entry naming that host allows it"
            )
