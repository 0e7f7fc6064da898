"""The ``conda-store-auth`` login cookie: a signed, timestamped, expiring user name."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["COOKIE_NAME", "CookieSigner"]

COOKIE_NAME = "conda-store-auth"


class CookieSigner:
    """Signs login sessions and short-lived OAuth state with the server's secret."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._session = URLSafeTimedSerializer(secret, salt="envstore-login")
        self._state = URLSafeTimedSerializer(secret, salt="envstore-oauth-state")
        # a key of its own for CSRF tokens, so that no other signature can be replayed as one
        self._csrf_key = hashlib.sha256(b"envstore-csrf\0" + secret.encode()).digest()
        self.max_age = max_age

    def sign_login(self, username: str) -> str:
        return self._session.dumps({"u": username})

    def read_login(self, value: str) -> str | None:
        """The user name in a valid, unexpired cookie; None for anything else."""
        data = self._loads(self._session, value, self.max_age)
        name = data.get("u") if data else None
        return name if isinstance(name, str) and name else None

    def csrf_token(self, cookie_value: str) -> str | None:
        """The CSRF token of the login a cookie carries (None for an invalid cookie).

        It is a MAC of the signed cookie: a page of another site can neither read the HttpOnly
        cookie nor compute the token, and a new login gives a new token."""
        if self.read_login(cookie_value) is None:
            return None
        return hmac.new(self._csrf_key, cookie_value.encode(), hashlib.sha256).hexdigest()

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
