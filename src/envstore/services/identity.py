"""Resolving the caller of a request (API.md "Identity", first match wins):

1. the ``conda-store-auth`` cookie (a signed cookie naming a live login session),
2. ``Authorization: Bearer <token>``,
3. ``Authorization: Basic base64(anything:<token>)``.

Anything unknown, expired, revoked or malformed is simply not a match; with no match the
caller is anonymous, never refused here (the v1 API never answers 401).
"""

from __future__ import annotations

import base64
import binascii

from sqlalchemy.orm import Session

from envstore.auth import Principal
from envstore.auth.cookies import CookieSigner
from envstore.services.access import anonymous
from envstore.services.sessions import principal_for_session
from envstore.services.tokens import principal_for_token
from envstore.settings import Settings

__all__ = ["identify", "token_from_header"]


def token_from_header(header: str | None) -> str | None:
    """The token in a Bearer or Basic ``Authorization`` header, if any."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def identify(
    db: Session,
    settings: Settings,
    signer: CookieSigner,
    cookie: str | None,
    authorization: str | None,
) -> Principal:
    if cookie:
        login = signer.read_login(cookie)
        signed = (
            principal_for_session(db, settings, login.username, login.session) if login else None
        )
        if signed is not None:
            return signed
    token = token_from_header(authorization)
    if token:
        found = principal_for_token(db, settings, token)
        if found is not None:
            return found
    return anonymous(settings)
