"""The one name grammar (RELIABILITY.md I4) and build references."""

from __future__ import annotations

from datetime import datetime

import pytest

from envstore.core.names import validate_name
from envstore.core.refs import parse_ref
from envstore.errors import InvalidInput, InvalidName


@pytest.mark.parametrize("name", ["default", "team-a", "my_env.v2", "_x", "A1", "x" * 128])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../x", "must start with"),
        ("x/../y", "letters, digits"),
        ("%2e%2e", "must start with"),
        ("a..b", "must not contain '..'"),
        ("nul\x00", "ASCII"),
        ("x" * 129, "the limit is 128"),
        ("-rf", "must start with"),
        (".hidden", "must start with"),
        ("\u0430dmin", "ASCII"),  # Cyrillic 'a' look-alike
        ("\uff44efault", "ASCII"),  # fullwidth d
        ("a b", "letters, digits"),
        ("", "must not be empty"),
    ],
)
def test_I4_bad_names_are_refused(name: str, fragment: str) -> None:
    with pytest.raises(InvalidName) as info:
        validate_name(name, kind="namespace")
    assert fragment in info.value.message


def test_refs() -> None:
    assert parse_ref("ns/env").build_id is None
    assert parse_ref("ns/env@12").build_id == 12
    assert parse_ref("ns/env@2022-05-31").at == datetime(2022, 5, 31, 23, 59, 59, 999999)
    assert parse_ref("ns/env@2022-05-31T10:00:00+02:00").at == datetime(2022, 5, 31, 8, 0)
    key = "0123abcd-20220531-100000-000000-3-env"
    assert parse_ref(f"ns/env@{key}").build_key == key
    with pytest.raises(InvalidInput, match="NAMESPACE/NAME"):
        parse_ref("justname")
    with pytest.raises(InvalidName):
        parse_ref("../x/y")
