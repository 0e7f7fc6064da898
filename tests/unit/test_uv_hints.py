"""Issue 15 item 12: uv's exclude-newer hint reaches users in envstore's terms."""

from __future__ import annotations

from envstore.backends.uv_hints import as_of_hints, in_envstore_terms

# What uv 0.13 prints for `six==1.16.0` with --exclude-newer 2020-01-01T00:00:00Z.
UV_OUTPUT = """error: No solution found when resolving dependencies
  cause: Because there is no version of six==1.16.0 and you require six==1.16.0, we can \
conclude that your requirements are unsatisfiable.

hint: `six` was filtered by `exclude-newer` to only include packages uploaded before \
2020-01-01T00:00:00Z. The requested version, v1.16.0, was published at \
2021-05-05T14:18:17.237Z. Consider using `exclude-newer-package` to override the cutoff for \
this package."""


def test_a_pin_newer_than_the_as_of_date_is_named_with_both_ways_out() -> None:
    assert as_of_hints(UV_OUTPUT) == [
        "hint: six 1.16.0 was published on 2021-05-05, after the as-of date 2020-01-01: pin a "
        "version of six published before that date, or choose a later --as-of date"
    ]


def test_a_hint_without_a_pinned_version_drops_uv_only_advice() -> None:
    line = (
        "hint: `iniconfig` was filtered by `exclude-newer` to only include packages uploaded "
        "before 2010-01-01T00:00:00Z. Consider using `exclude-newer-package` to override the "
        "cutoff for this package."
    )
    assert in_envstore_terms(line) == (
        "hint: iniconfig has only the releases published before the as-of date 2010-01-01 "
        "(--as-of)."
    )


def test_other_lines_are_left_alone() -> None:
    assert in_envstore_terms("  cause: Because there is no version") == (
        "  cause: Because there is no version"
    )
    assert as_of_hints("error: No solution found\nhint: something else") == []
