"""Which envstore server the Jupyter side talks to, and with whose token.

The URL is ``ENVSTORE_URL`` (a kernelspec carries the URL it was synced from in its ``env``).
The token, first match wins: ``ENVSTORE_TOKEN``; the token ``envstore login`` kept for this URL;
in a JupyterHub single-user server, one traded for the server's own hub token
(``JUPYTERHUB_API_TOKEN``) at envstore's ``POST /api/v1/jupyterhub/token/``, so hub users never
copy a token by hand (docs/jupyter.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import httpx

from envstore.cli.client import DEFAULT_URL, EnvstoreClient, error_from_response
from envstore.cli.credentials import stored_token
from envstore.errors import Unavailable

__all__ = ["exchange_hub_token", "open_client", "server_url", "user_token"]

HUB_EXCHANGE_PATH = "api/v1/jupyterhub/token/"


def server_url(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return (environ.get("ENVSTORE_URL") or DEFAULT_URL).rstrip("/")


def user_token(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``ENVSTORE_TOKEN``, else the token ``envstore login`` stored for ``url``."""
    environ = os.environ if environ is None else environ
    return environ.get("ENVSTORE_TOKEN") or stored_token(url)


def exchange_hub_token(url: str, hub_token: str, *, timeout: float = 30.0) -> str:
    """Trade a JupyterHub API token for an envstore token of the same hub user."""
    try:
        answer = httpx.post(
            f"{url.rstrip('/')}/{HUB_EXCHANGE_PATH}",
            json={"hub_token": hub_token},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach envstore at {url}: {exc}") from None
    if not answer.is_success:
        raise error_from_response(answer)
    data = answer.json().get("data") or {}
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise Unavailable(f"envstore at {url} handed out no token for the hub user")
    return token


def open_client(url: str, environ: Mapping[str, str] | None = None) -> EnvstoreClient:
    return EnvstoreClient(url, token=user_token(url, environ))
