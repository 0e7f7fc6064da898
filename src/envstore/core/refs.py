"""References to one exact build: ``NS/NAME``, ``NS/NAME@BUILD`` and ``NS/NAME@DATE``.

``BUILD`` is a build id or a build key; ``DATE`` (``2022-05-31`` or an ISO datetime) names
the build that was current at that moment (the end of the day for a bare date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from envstore.core.names import validate_name
from envstore.errors import InvalidInput

__all__ = ["EnvRef", "parse_ref"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class EnvRef:
    namespace: str
    name: str
    build_id: int | None = None
    build_key: str | None = None
    at: datetime | None = None  # naive UTC


def parse_ref(text: str) -> EnvRef:
    """Parse ``NS/NAME[@BUILD|@DATE]``; raise :class:`InvalidInput` with a readable message."""
    base, _, selector = text.partition("@")
    namespace, slash, name = base.partition("/")
    if not slash:
        raise InvalidInput(f"{text!r} is not of the form NAMESPACE/NAME[@BUILD|@DATE]")
    validate_name(namespace, kind="namespace")
    validate_name(name, kind="environment name")
    if not selector:
        return EnvRef(namespace, name)
    if selector.isascii() and selector.isdigit():
        if not 1 <= int(selector) <= 2**31 - 1:  # what the id columns hold (I13)
            raise InvalidInput(f"build id {selector[:40]!r} is out of range")
        return EnvRef(namespace, name, build_id=int(selector))
    if _DATE.fullmatch(selector):
        try:
            day = datetime.fromisoformat(selector).date()
        except ValueError as exc:
            raise InvalidInput(f"{selector!r} is not a date: {exc}") from None
        return EnvRef(namespace, name, at=datetime.combine(day, time.max))
    try:
        moment = datetime.fromisoformat(selector)
    except ValueError:
        validate_name(selector, kind="build key", max_length=255)
        return EnvRef(namespace, name, build_key=selector)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return EnvRef(namespace, name, at=moment + timedelta(0))
