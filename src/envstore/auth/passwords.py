"""Password hashing for local accounts: Argon2id through ``argon2-cffi``."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["MIN_PASSWORD_LENGTH", "hash_password", "needs_rehash", "verify_password"]

MIN_PASSWORD_LENGTH = 8
_HASHER = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name costs as long as a wrong
# password and login timing does not tell which names exist.
_DUMMY = _HASHER.hash("envstore-no-such-user")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)
