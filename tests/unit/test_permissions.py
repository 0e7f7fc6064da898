"""Roles, glob patterns and the "never wider" rule of core.permissions (pure, no I/O)."""

from __future__ import annotations

import pytest

from envstore.auth import Principal
from envstore.core.permissions import (
    Permission,
    Role,
    RoleBinding,
    allowed,
    bindings_from_mapping,
    narrower_or_equal,
    parse_role,
    pattern_covers,
    validate_pattern,
)
from envstore.errors import Forbidden, InvalidInput

P = Permission


def test_roles_are_nested_and_developer_is_editor() -> None:
    assert parse_role("Developer") is Role.EDITOR
    viewer, editor, admin = (RoleBinding("t/*", r) for r in Role)
    assert viewer.permissions < editor.permissions < admin.permissions
    assert P.ENV_CREATE not in viewer.permissions and P.ENV_DELETE not in editor.permissions
    with pytest.raises(InvalidInput):
        parse_role("owner")


@pytest.mark.parametrize(
    ("wider", "narrower", "expected"),
    [
        ("*/*", "team/app", True),
        ("team/*", "team/app", True),
        ("team/*", "teams/app", False),
        ("team/*", "team/*", True),
        ("team/app", "team/*", False),
        ("*/*", "team/*", True),
        ("team/a?", "team/a*", False),
        ("team/a*", "team/a?", True),
        ("Team/*", "team/x", False),
    ],
)
def test_pattern_covers(wider: str, narrower: str, expected: bool) -> None:
    assert pattern_covers(wider, narrower) is expected


def test_namespace_wide_permission_needs_a_namespace_wide_pattern() -> None:
    one_env = (RoleBinding("team/app", Role.ADMIN),)
    assert allowed(one_env, P.ENV_DELETE, "team", "app")
    assert not allowed(one_env, P.NAMESPACE_DELETE, "team")
    who = Principal("u", "u", bindings=one_env)
    assert who.can_in_namespace(P.ENV_READ, "team") and not who.can(P.ENV_READ, "team")


def test_bindings_from_settings_fill_in_the_username() -> None:
    got = bindings_from_mapping({"{username}/*": ["admin"], "default/*": ["viewer"]}, "ann")
    assert got == (RoleBinding("ann/*", Role.ADMIN), RoleBinding("default/*", Role.VIEWER))
    assert bindings_from_mapping({"{username}/*": ["admin"]}) == ()
    with pytest.raises(InvalidInput):
        validate_pattern("../x/y")
    with pytest.raises(InvalidInput):
        validate_pattern("no-slash")


def test_narrowing_never_widens() -> None:
    held = (RoleBinding("team/*", Role.EDITOR), RoleBinding("default/*", Role.VIEWER))
    assert narrower_or_equal((RoleBinding("team/app", Role.VIEWER),), held)
    assert narrower_or_equal((RoleBinding("team/*", Role.EDITOR),), held)
    assert not narrower_or_equal((RoleBinding("team/*", Role.ADMIN),), held)
    assert not narrower_or_equal((RoleBinding("*/*", Role.VIEWER),), held)
    assert not narrower_or_equal((RoleBinding("default/*", Role.EDITOR),), held)


def test_a_limited_principal_needs_both_its_bindings_and_its_limit() -> None:
    who = Principal(
        "u",
        "u",
        bindings=(RoleBinding("u/*", Role.ADMIN),),
        limit=(RoleBinding("u/app", Role.VIEWER), RoleBinding("other/*", Role.ADMIN)),
    )
    assert who.can(P.ENV_READ, "u", "app")
    assert not who.can(P.ENV_UPDATE, "u", "app")
    assert not who.can(P.ENV_READ, "other", "x")
    with pytest.raises(Forbidden, match="request not authorized"):
        who.require(P.ENV_DELETE, "u", "app")
