"""Version ranges of policy rules, for conda and PyPI packages alike.

A range is PEP 440 specifiers joined by commas (``>=1.2,<2``, ``==2.2.*``, ``!=1.5``), with
conda's shorthand accepted: a bare version (``1.2``) means exactly it and ``2.2.*`` the series.
Versions that PEP 440 cannot read (conda's ``1.1.1w``, ``9e``) are compared component by
component (numbers as numbers, letters as text), which orders the usual conda versions the way
conda does. Pure: no I/O.
"""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envstore.errors import InvalidInput

__all__ = ["in_range", "validate_range"]

_OPERATOR = re.compile(r"^(===|==|!=|~=|>=|<=|>|<)?\s*(.+)$")
_PART = re.compile(r"\d+|[A-Za-z]+")


def validate_range(text: str | None) -> str | None:
    """``text`` as a normal range (``>=1.2,<2``), None for none; InvalidInput if unreadable."""
    if text is None:
        return None
    clauses = [_clause(part.strip()) for part in text.split(",") if part.strip()]
    if not clauses:
        raise InvalidInput(f"empty version range {text!r}")
    return ",".join(clauses)


def _clause(part: str) -> str:
    match = _OPERATOR.match(part)
    if not match or not re.fullmatch(r"[A-Za-z0-9_.*+!\-]+", match.group(2)):
        raise InvalidInput(f"invalid version range clause {part!r}")
    operator, version = match.group(1) or "==", match.group(2)
    if operator == "==" and version.startswith("="):
        raise InvalidInput(f"invalid version range clause {part!r}")
    if "*" in version and (operator not in ("==", "!=") or not version.endswith(".*")):
        raise InvalidInput(f"'*' only ends a series: {part!r} (e.g. '==2.2.*')")
    return f"{operator}{version}"


def in_range(version: str, text: str | None) -> bool:
    """Whether ``version`` lies in the range ``text`` (None: every version)."""
    if text is None:
        return True
    return all(_satisfies(version, clause) for clause in text.split(","))


def _satisfies(version: str, clause: str) -> bool:
    pep = _pep_specifier(clause)
    parsed = _pep_version(version)
    if pep is not None and parsed is not None:
        return pep.contains(parsed, prereleases=True)
    match = _OPERATOR.match(clause)
    assert match is not None
    operator, bound = match.group(1) or "==", match.group(2)
    if bound.endswith(".*"):
        inside = _key(version)[: len(_key(bound[:-2]))] == _key(bound[:-2])
        return inside if operator == "==" else not inside
    left, right = _key(version), _key(bound)
    return {
        "==": left == right,
        "===": version == bound,
        "!=": left != right,
        ">=": left >= right,
        "<=": left <= right,
        ">": left > right,
        "<": left < right,
        "~=": left >= right and left[: max(1, len(right) - 1)] == right[: max(1, len(right) - 1)],
    }[operator]


@lru_cache(maxsize=4096)
def _pep_specifier(clause: str) -> SpecifierSet | None:
    try:
        Specifier(clause)
        return SpecifierSet(clause)
    except InvalidSpecifier:
        return None


@lru_cache(maxsize=16384)
def _pep_version(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _key(version: str) -> tuple[tuple[int, int, str], ...]:
    # numbers sort above letters within a component (1.0 > 1.0a), as conda orders them
    return tuple(
        (1, int(part), "") if part.isdigit() else (0, 0, part.lower())
        for part in _PART.findall(version)
    )
