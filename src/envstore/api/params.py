"""Bounded numbers for paths, queries and bodies (I13).

Every id, page and offset a client sends is checked against what the database columns hold
before it reaches a query (ids are PostgreSQL ``integer``s: 2**31 - 1; byte offsets
``bigint``s: 2**63 - 1), so a huge number, ``1e3`` or a NUL is a 4xx naming the parameter,
never an overflow inside the driver (SQLite) or the server (PostgreSQL).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from envstore.errors import InvalidInput

__all__ = ["MAX_ID", "MAX_OFFSET", "MAX_PAGE", "Id", "OptionalIdQuery", "parse_id"]

MAX_ID = 2**31 - 1
MAX_OFFSET = 2**63 - 1
MAX_PAGE = 2**31 - 1  # times the page size (at most 100) stays far below MAX_OFFSET

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def parse_id(value: object, what: str) -> int:
    """``value`` (a raw path parameter) as an id; InvalidInput if it is not one."""
    text = str(value)
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ID):
        raise InvalidInput(f"{what} must be a whole number from 1 to {MAX_ID}, not {text[:40]!r}")
    return int(text)
