"""Who is calling, and what they may see: principals from users and tokens, list filters.

A principal's role bindings are, in order: the settings' defaults (``user_role_bindings`` with
``{username}`` filled in, ``authenticated_role_bindings``, per-group bindings), ``*/*: admin``
for administrators, and the namespace role mappings that name the user, one of their groups,
their primary namespace or every signed-in user. Anonymous callers get
``anonymous_role_bindings`` only.

List routes filter in SQL: :func:`visible` turns the bindings that grant a permission into a
``WHERE`` clause over namespace and environment names (GLOB on SQLite, which is case-sensitive
like PostgreSQL's LIKE), so a page never needs a per-row check.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, and_, bindparam, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from envstore.auth import Principal
from envstore.core.permissions import (
    Permission,
    Role,
    RoleBinding,
    bindings_from_mapping,
    granting,
    parse_role,
    pattern_covers,
)
from envstore.db.models import (
    Build,
    Environment,
    Group,
    Namespace,
    NamespaceRoleMapping,
    User,
    UserGroup,
)
from envstore.settings import Settings

_Column = ColumnElement[str] | InstrumentedAttribute[str]

__all__ = [
    "anonymous",
    "build_owner",
    "entities_of",
    "principal_for_user",
    "signed_in",
    "visible",
    "visible_namespaces",
]


def anonymous(settings: Settings) -> Principal:
    return Principal(
        name="anonymous",
        primary_namespace="default",
        authenticated=False,
        bindings=bindings_from_mapping(settings.anonymous_role_bindings),
    )


def entities_of(name: str, groups: Iterable[str], primary_namespace: str) -> list[str]:
    """The ``entity`` strings of namespace role mappings that apply to this user."""
    return [
        name,
        f"user:{name}",
        f"namespace:{primary_namespace}",
        "*",
        *(f"group:{g}" for g in groups),
    ]


_GROUPS = (
    select(Group.name)
    .join(UserGroup, UserGroup.group_id == Group.id)
    .where(UserGroup.user_id == bindparam("user_id"))
    .order_by(Group.name)
)
_MAPPED_ROLES = (
    select(Namespace.name, NamespaceRoleMapping.role)
    .join(Namespace, Namespace.id == NamespaceRoleMapping.namespace_id)
    .where(
        NamespaceRoleMapping.entity.in_(bindparam("entities", expanding=True)),
        Namespace.deleted_on.is_(None),
    )
)


def principal_for_user(db: Session, settings: Settings, user: User) -> Principal:
    """The principal of a signed-in user (two small queries)."""
    return signed_in(db, settings, user.id, user.name, is_admin=user.is_admin)


def signed_in(
    db: Session, settings: Settings, user_id: int, name: str, *, is_admin: bool
) -> Principal:
    """The principal of a signed-in user given by id and name (two small queries).

    Identity is resolved on every request: the statements are built once and run on the
    session's connection, without ORM objects."""
    connection = db.connection()
    groups = tuple(connection.execute(_GROUPS, {"user_id": user_id}).scalars())
    bindings = set(bindings_from_mapping(settings.user_role_bindings, name))
    bindings |= set(bindings_from_mapping(settings.authenticated_role_bindings, name))
    for group in groups:
        bindings |= set(bindings_from_mapping(settings.group_role_bindings.get(group, {})))
    if is_admin:
        bindings.add(RoleBinding("*/*", Role.ADMIN))
    mapped = connection.execute(_MAPPED_ROLES, {"entities": entities_of(name, groups, name)})
    bindings |= {RoleBinding(f"{ns}/*", parse_role(role)) for ns, role in mapped.tuples()}
    return Principal(
        name=name,
        primary_namespace=name,
        authenticated=True,
        bindings=tuple(sorted(bindings)),
        groups=groups,
        user_id=user_id,
    )


def _glob(column: _Column, pattern: str, dialect: str) -> ColumnElement[bool]:
    if pattern == "*":
        return true()
    if "*" not in pattern and "?" not in pattern:
        return column == pattern
    if dialect == "sqlite":
        # Patterns hold only name characters and wildcards (validate_pattern): no '[' to escape.
        return column.op("GLOB")(pattern)
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")


def _any_of(
    bindings: Sequence[RoleBinding],
    permission: Permission,
    namespace: _Column,
    environment: _Column | None,
    dialect: str,
) -> ColumnElement[bool]:
    clauses = []
    for binding in granting(bindings, permission):
        if environment is None:
            if not pattern_covers(binding.environment_part, "*"):
                continue  # a binding on some environments does not open the namespace
            clauses.append(_glob(namespace, binding.namespace_part, dialect))
        else:
            clauses.append(
                and_(
                    _glob(namespace, binding.namespace_part, dialect),
                    _glob(environment, binding.environment_part, dialect),
                )
            )
    return or_(*clauses) if clauses else false()


def visible(
    db: Session,
    who: Principal,
    permission: Permission,
    namespace: _Column,
    environment: _Column | None = None,
) -> ColumnElement[bool]:
    """A WHERE clause: rows whose ``namespace/environment`` the caller holds ``permission`` on.

    Without ``environment`` the check is namespace-wide (``ns/*``).
    """
    dialect = db.get_bind().dialect.name
    clause = _any_of(who.bindings, permission, namespace, environment, dialect)
    if who.limit is not None:
        clause = and_(clause, _any_of(who.limit, permission, namespace, environment, dialect))
    return clause


def visible_namespaces(db: Session, who: Principal) -> ColumnElement[bool]:
    """Namespaces the caller may read: namespace-wide read, or read on some environment."""
    dialect = db.get_bind().dialect.name

    def one(bindings: Sequence[RoleBinding]) -> ColumnElement[bool]:
        clauses = [
            _glob(Namespace.name, b.namespace_part, dialect)
            for b in granting(bindings, Permission.NAMESPACE_READ)
        ]
        return or_(*clauses) if clauses else false()

    clause = one(who.bindings)
    return and_(clause, one(who.limit)) if who.limit is not None else clause


_MAX_ID = 2**63  # ids are 64-bit signed integers in both databases
_BUILD_OWNER = (
    select(Namespace.name, Environment.name)
    .join(Environment, Environment.namespace_id == Namespace.id)
    .join(Build, Build.environment_id == Environment.id)
    .where(Build.id == bindparam("build_id"), Build.deleted_on.is_(None))
)


def build_owner(db: Session, build_id: int) -> tuple[str, str] | None:
    """``(namespace, environment)`` of a live build, for checking permissions on it.

    It runs before every route on a build: the statement is built once, and runs on the
    session's connection (no ORM work for two columns)."""
    if not 0 < build_id < _MAX_ID:
        return None  # no such row; and the database would refuse the number
    row = db.connection().execute(_BUILD_OWNER, {"build_id": build_id}).first()
    return (row[0], row[1]) if row is not None else None
