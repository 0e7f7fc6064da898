"""The one name grammar for namespaces and environments.

Names end up in filesystem paths and URLs, so they are deliberately narrow: ASCII letters,
digits, ``_``, ``.`` and ``-``, starting with a letter, digit or ``_``, no ``..``, bounded
length. Anything else (``../x``, ``%2e%2e``, NUL, unicode look-alikes, a leading ``-``) is
refused with a message that names the problem (RELIABILITY.md I4).
"""

from __future__ import annotations

import re

from envstore.errors import InvalidName

__all__ = ["DEFAULT_MAX_NAME_LENGTH", "validate_name"]

DEFAULT_MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def validate_name(
    value: str, *, kind: str = "name", max_length: int = DEFAULT_MAX_NAME_LENGTH
) -> str:
    """Return ``value`` if it is a valid name, else raise :class:`InvalidName`."""
    if not isinstance(value, str) or value == "":
        raise InvalidName(f"{kind} must not be empty")
    if len(value) > max_length:
        raise InvalidName(f"{kind} is {len(value)} characters long; the limit is {max_length}")
    if not value.isascii() or not value.isprintable():
        raise InvalidName(f"{kind} {value!r} may contain only ASCII letters, digits, '_', '.', '-'")
    if not _NAME.fullmatch(value):
        raise InvalidName(
            f"{kind} {value!r} must start with a letter, digit or '_' and contain only "
            "letters, digits, '_', '.', '-'"
        )
    if ".." in value:
        raise InvalidName(f"{kind} {value!r} must not contain '..'")
    return value
