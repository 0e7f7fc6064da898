"""The ``conda-store-auth`` login cookie: a signed, timestamped, expiring user name and the
secret of a server-side login session, plus the CSRF token derived from that session."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["COOKIE_NAME", "CookieSigner", "LoginCookie"]

COOKIE_NAME = "conda-store-auth"


@dataclass(frozen=True)
class LoginCookie:
    """What a valid cookie says: the user's name and the secret naming their session."""

    username: str
    session: str


class CookieSigner:
    """Signs login sessions and short-lived OAuth state with the server's secret."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="envstore-login")
        self._state = URLSafeTimedSerializer(secret, salt="envstore-oauth-state")
        # a key of its own for CSRF tokens, so that no other signature can be replayed as one
        self._csrf_key = hashlib.sha256(b"envstore-csrf\0" + secret.encode()).digest()
        self.max_age = max_age

    def sign_login(self, username: str, session: str) -> str:
        return self._session.dumps({"u": username, "s": session})

    def read_login(self, value: str) -> LoginCookie | None:
        """The user and session of a valid, unexpired cookie; None for anything else
        (cookies signed before sessions were recorded carry no session: they sign nobody in)."""
        data = self._loads(self._session, value, self.max_age)
        if data is None:
            return None
        name, session = data.get("u"), data.get("s")
        if not isinstance(name, str) or not name or not isinstance(session, str) or not session:
            return None
        return LoginCookie(name, session)

    def csrf_token(self, cookie_value: str) -> str | None:
        """The CSRF token of the session a cookie names (None for an invalid cookie).

        It is a MAC of the session secret: a page of another site can neither read the
        HttpOnly cookie nor compute the token, and a new login gives a new token."""
        login = self.read_login(cookie_value)
        if login is None:
            return None
        return hmac.new(self._csrf_key, login.session.encode(), hashlib.sha256).hexdigest()

    def check_csrf_token(self, cookie_value: str, token: str) -> bool:
        expected = self.csrf_token(cookie_value)
        return expected is not None and hmac.compare_digest(expected, token)

    def sign_state(self, data: dict[str, Any]) -> str:
        return self._state.dumps(data)

    def read_state(self, value: str, max_age: int = 600) -> dict[str, Any] | None:
        return self._loads(self._state, value, max_age)

    @staticmethod
    def _loads(
        serializer: URLSafeTimedSerializer, value: str, max_age: int
    ) -> dict[str, Any] | None:
        try:
            data = serializer.loads(value, max_age=max_age)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        return data if isinstance(data, dict) else None
