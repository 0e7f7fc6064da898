"""Roles, permissions and ``namespace/environment`` glob patterns: who may do what, where.

Pure: no I/O. A caller holds *role bindings* (a pattern and a role); a permission is granted on
``ns/env`` when some binding's pattern matches it and its role includes the permission.
Namespace-wide permissions are checked on ``ns/*``, which only a binding whose environment part
covers every environment matches (``team/*`` does, ``team/app`` does not).

Patterns use ``*`` (any run of characters) and ``?`` (one character) over the name grammar of
:mod:`envstore.core.names`, and have exactly one ``/`` (API.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from functools import lru_cache

from envstore.errors import InvalidInput

__all__ = [
    "ROLE_PERMISSIONS",
    "Permission",
    "Role",
    "RoleBinding",
    "allowed",
    "bindings_from_mapping",
    "covers",
    "granting",
    "narrower_or_equal",
    "parse_role",
    "pattern_covers",
    "validate_pattern",
]


class Permission(StrEnum):
    """The permission names of the conda-store API (API.md)."""

    NAMESPACE_READ = "namespace::read"
    NAMESPACE_CREATE = "namespace::create"
    NAMESPACE_UPDATE = "namespace::update"
    NAMESPACE_DELETE = "namespace::delete"
    ROLE_MAPPING_READ = "namespace-role-mapping::read"
    ROLE_MAPPING_CREATE = "namespace-role-mapping::create"
    ROLE_MAPPING_UPDATE = "namespace-role-mapping::update"
    ROLE_MAPPING_DELETE = "namespace-role-mapping::delete"
    ENV_READ = "environment::read"
    ENV_UPDATE = "environment::update"
    ENV_DELETE = "environment::delete"
    ENV_CREATE = "environment:create"
    BUILD_CANCEL = "build::cancel"
    BUILD_DELETE = "build::delete"
    SETTING_READ = "setting::read"
    SETTING_UPDATE = "setting::update"
    AUDIT_READ = "audit::read"  # envstore's own: the audit log (admins only)


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"


_VIEWER = frozenset(
    {
        Permission.NAMESPACE_READ,
        Permission.ROLE_MAPPING_READ,
        Permission.ENV_READ,
        Permission.SETTING_READ,
    }
)
_EDITOR = _VIEWER | {
    Permission.ENV_CREATE,
    Permission.ENV_UPDATE,
    Permission.BUILD_CANCEL,
}
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.EDITOR: _EDITOR,
    Role.ADMIN: frozenset(Permission),
}
_ALIASES = {"developer": Role.EDITOR}
_PATTERN = re.compile(r"[A-Za-z0-9_.\-*?{}]+/[A-Za-z0-9_.\-*?{}]+")


def parse_role(value: str) -> Role:
    """``viewer``, ``editor`` (alias ``developer``) or ``admin``, any case."""
    name = value.strip().lower()
    if name in _ALIASES:
        return _ALIASES[name]
    try:
        return Role(name)
    except ValueError:
        raise InvalidInput(
            f"unknown role {value!r}; choose viewer, editor (alias developer) or admin"
        ) from None


def validate_pattern(value: str) -> str:
    """A ``namespace/environment`` glob: name characters, ``*`` and ``?``, exactly one ``/``."""
    if not _PATTERN.fullmatch(value) or ".." in value:
        raise InvalidInput(
            f"role binding pattern {value!r} must look like 'namespace/environment' "
            "(letters, digits, '_', '.', '-', '*', '?')"
        )
    return value


@dataclass(frozen=True, order=True)
class RoleBinding:
    pattern: str
    role: Role

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    @property
    def namespace_part(self) -> str:
        return self.pattern.split("/", 1)[0]

    @property
    def environment_part(self) -> str:
        return self.pattern.split("/", 1)[1]


def bindings_from_mapping(
    mapping: Mapping[str, Iterable[str]], username: str | None = None
) -> tuple[RoleBinding, ...]:
    """``{"{username}/*": ["admin"]}`` → bindings; ``{username}`` is filled in when known."""
    out: list[RoleBinding] = []
    for raw, roles in mapping.items():
        if "{username}" in raw and username is None:
            continue
        pattern = validate_pattern(raw.replace("{username}", username or ""))
        out.extend(RoleBinding(pattern, parse_role(role)) for role in roles)
    return tuple(sorted(set(out)))


def granting(bindings: Iterable[RoleBinding], permission: Permission) -> list[RoleBinding]:
    return [b for b in bindings if permission in b.permissions]


def allowed(
    bindings: Iterable[RoleBinding], permission: Permission, namespace: str, environment: str = "*"
) -> bool:
    """Whether ``bindings`` grant ``permission`` on ``namespace/environment``.

    ``environment="*"`` asks for the whole namespace: only a pattern covering every environment
    of it grants that.
    """
    target = f"{namespace}/{environment}"
    return any(pattern_covers(b.pattern, target) for b in granting(bindings, permission))


@lru_cache(maxsize=1024)
def _cover_regex(pattern: str) -> re.Pattern[str]:
    # A wildcard of the wider pattern may stand for a wildcard of the narrower one, but a ``?``
    # never stands for a ``*`` (``a?`` does not cover ``a*``).
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(r"[^*]")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def pattern_covers(wider: str, narrower: str) -> bool:
    """Whether every ``ns/env`` matched by ``narrower`` is matched by ``wider``.

    A plain name is a pattern without wildcards, so this is also the match test.
    """
    if "*" not in narrower and "?" not in narrower:
        return fnmatchcase(narrower, wider)
    return _cover_regex(wider).fullmatch(narrower) is not None


def covers(bindings: Iterable[RoleBinding], wanted: RoleBinding) -> bool:
    """Whether ``bindings`` grant every permission of ``wanted`` on all of its pattern."""
    held: set[Permission] = set()
    for binding in bindings:
        if pattern_covers(binding.pattern, wanted.pattern):
            held |= binding.permissions
    return wanted.permissions <= held


def narrower_or_equal(wanted: Iterable[RoleBinding], held: Iterable[RoleBinding]) -> bool:
    """Whether ``wanted`` asks for nothing that ``held`` does not grant (A5)."""
    have = tuple(held)
    return all(covers(have, binding) for binding in wanted)
