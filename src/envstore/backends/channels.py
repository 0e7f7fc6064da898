"""Channel URL handling for the conda backend: names to URLs, normalisation, redaction.

The canonical form of a channel and the server's allow-list are pure and live in
:mod:`envstore.core.channels` (the request and the policy use them too); this module
re-exports them for the backend, :func:`redact` included. Credentials from the
settings (a token or a username/password per channel URL prefix) never enter a URL: they are
sent as an ``Authorization`` header by the rattler client that :func:`make_client` builds.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from envstore.core.channels import channel_for_url, channel_url, channel_urls, redact

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
