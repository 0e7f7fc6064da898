"""API token strings: opaque, recognisable by their prefix, stored only as a sha256 (A4)."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "looks_like_token", "new_token"]

TOKEN_PREFIX = "envs_"  # noqa: S105 (a label, not a secret)


def new_token() -> str:
    """A fresh token: the prefix and 256 random bits (43 URL-safe characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # A fast hash is right here: the token is 256 random bits, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 200
