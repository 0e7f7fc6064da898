"""External login: a generic OAuth2 / OIDC authorization-code provider, and JupyterHub.

The flow (with PKCE): ``/login/`` redirects to the provider's authorize URL with a signed
``state``; the provider redirects back to ``/oauth_callback/`` with a ``code``, which the
server exchanges at the token URL (authenticated with the client secret) for an access token,
then asks the userinfo URL who it belongs to. Identity comes from the userinfo answer over
the server-to-server channel, so no id_token (JWT) needs verifying here. JupyterHub is the same
flow against its own endpoints, with ``/hub/api/user`` as userinfo (``name``, ``groups``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from envstore.core.names import validate_name
from envstore.errors import Forbidden, InvalidInput, Unavailable
from envstore.settings import Settings

__all__ = [
    "ExternalIdentity",
    "IdentityProvider",
    "OAuthProvider",
    "hub_token_identity",
    "new_pkce_pair",
    "provider_from_settings",
]


@dataclass(frozen=True)
class ExternalIdentity:
    username: str
    groups: tuple[str, ...]


class IdentityProvider(Protocol):
    @property
    def name(self) -> str: ...

    def authorize_url(self, state: str, challenge: str, redirect_uri: str) -> str: ...

    def identify(self, code: str, verifier: str, redirect_uri: str) -> ExternalIdentity: ...


def new_pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class OAuthProvider:
    """An OAuth2 authorization-code provider, configured by URLs."""

    name: str
    client_id: str
    client_secret: str
    authorize_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    scopes: str
    username_claim: str
    groups_claim: str
    timeout: float = 10.0

    def authorize_url(self, state: str, challenge: str, redirect_uri: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scopes,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if not self.scopes:
            # JupyterHub refuses an empty scope (invalid_scope); none asked = its default.
            del query["scope"]
        separator = "&" if "?" in self.authorize_endpoint else "?"
        return f"{self.authorize_endpoint}{separator}{urlencode(query)}"

    def identify(self, code: str, verifier: str, redirect_uri: str) -> ExternalIdentity:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "code_verifier": verifier,
        }
        import httpx  # at the first external login: a server without one never loads it

        try:
            with httpx.Client(timeout=self.timeout) as http:
                answer = http.post(
                    self.token_endpoint, data=form, headers={"Accept": "application/json"}
                )
                if answer.status_code != 200:
                    raise Forbidden("the identity provider refused the login code")
                access = answer.json().get("access_token")
                if not isinstance(access, str) or not access:
                    raise Forbidden("the identity provider gave no access token")
                info = http.get(
                    self.userinfo_endpoint, headers={"Authorization": f"Bearer {access}"}
                )
                if info.status_code != 200:
                    raise Forbidden("the identity provider did not say who logged in")
                claims = info.json()
        except httpx.HTTPError as exc:
            raise Unavailable(f"identity provider unreachable: {exc}") from None
        return _identity(claims, self.username_claim, self.groups_claim)


def hub_token_identity(
    api_url: str, hub_token: str, service_name: str, *, timeout: float = 10.0
) -> ExternalIdentity:
    """The hub user a JupyterHub API token belongs to, if the token may use envstore.

    The hub itself says who owns the token (``GET {api}/user``). Only a user's token is
    accepted, and only with ``access:services`` to this service among its scopes: the hub gives
    that scope to the tokens the administrator chose (docs/jupyter.md: the single-user servers'
    role), so a token the user handed to another hub service cannot be traded for theirs.
    """
    import httpx  # here, not at import: a server without JupyterHub never loads it

    try:
        with httpx.Client(timeout=timeout) as http:
            answer = http.get(
                f"{api_url.rstrip('/')}/user", headers={"Authorization": f"token {hub_token}"}
            )
    except httpx.HTTPError as exc:
        raise Unavailable(f"JupyterHub unreachable: {exc}") from None
    if answer.status_code in (401, 403, 404):
        raise Forbidden("JupyterHub does not accept this token")
    if answer.status_code != 200:
        raise Unavailable(f"JupyterHub answered {answer.status_code} when asked about a token")
    model = answer.json()
    if not isinstance(model, dict) or model.get("kind", "user") != "user":
        raise Forbidden("only a hub user's token can be traded for an envstore token")
    scopes = model.get("scopes") or []
    wanted = {"access:services", f"access:services!service={service_name}"}
    if not wanted.intersection(s for s in scopes if isinstance(s, str)):
        raise Forbidden(
            f"this hub token lacks access:services!service={service_name}; "
            "grant it to the single-user servers' role (docs/jupyter.md)"
        )
    return _identity(model, "name", "groups")


def _identity(claims: Any, username_claim: str, groups_claim: str) -> ExternalIdentity:
    if not isinstance(claims, dict):
        raise Forbidden("the identity provider answered an unexpected body")
    name = claims.get(username_claim) or claims.get("name") or claims.get("login")
    if not isinstance(name, str):
        raise Forbidden(f"the identity provider sent no {username_claim!r} claim")
    try:
        validate_name(name, kind="user name")
    except InvalidInput:
        raise Forbidden(f"user name {name!r} is not usable as a namespace name") from None
    raw_groups = claims.get(groups_claim) or []
    groups = tuple(
        sorted({g.strip("/") for g in raw_groups if isinstance(g, str) and g.strip("/")})
    )
    return ExternalIdentity(name, groups)


def provider_from_settings(settings: Settings) -> OAuthProvider | None:
    """The configured external provider, if any."""
    kind = settings.oauth_provider
    if kind is None:
        return None
    secret = settings.oauth_client_secret.get_secret_value()
    if kind == "jupyterhub":
        # The browser goes to the hub's public URL; envstore itself calls the hub's API URL.
        hub = settings.jupyterhub_url.rstrip("/")
        api = settings.resolved_jupyterhub_api_url
        return OAuthProvider(
            name="jupyterhub",
            client_id=settings.oauth_client_id,
            client_secret=secret,
            authorize_endpoint=f"{hub}/hub/api/oauth2/authorize",
            token_endpoint=f"{api}/oauth2/token",
            userinfo_endpoint=f"{api}/user",
            scopes="",
            username_claim="name",
            groups_claim="groups",
        )
    return OAuthProvider(
        name="oidc",
        client_id=settings.oauth_client_id,
        client_secret=secret,
        authorize_endpoint=settings.oauth_authorize_url,
        token_endpoint=settings.oauth_token_url,
        userinfo_endpoint=settings.oauth_userinfo_url,
        scopes=settings.oauth_scopes,
        username_claim=settings.oauth_username_claim,
        groups_claim=settings.oauth_groups_claim,
    )
