"""Where a login may send the browser next (A12): a path on this server, nothing else.

Browsers and URL parsers forgive a lot: ``//evil``, ``/\\evil``, ``/\\t/evil`` (tabs and new
lines are dropped, so it becomes ``//evil``), ``https://evil`` all leave the site. Only a
printable-ASCII absolute path whose second character is not a slash is accepted; anything
else falls back to the default page.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["safe_next"]

_MAX_LENGTH = 2048


def safe_next(raw: str | None, default: str) -> str:
    if not raw or len(raw) > _MAX_LENGTH:
        return default
    if any(not 0x21 <= ord(c) <= 0x7E for c in raw) or "\\" in raw:
        return default  # control characters, spaces, non-ASCII, backslashes
    if not raw.startswith("/") or raw.startswith("//"):
        return default
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return default
    return raw
