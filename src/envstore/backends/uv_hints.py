"""uv's hints about ``--exclude-newer``, said in envstore's terms.

An as-of build passes ``--as-of`` to uv as ``--exclude-newer``. When a pin was published after
that date, uv explains it and suggests ``exclude-newer-package``, an option envstore users
cannot set. The same facts are told here as what they can act on: which pin conflicts with
the as-of date, and the two ways out (an earlier version, or a later date).
"""

from __future__ import annotations

import re

__all__ = ["as_of_hints", "in_envstore_terms"]

_PINNED = re.compile(
    r"hint: `(?P<name>[^`]+)` was filtered by `exclude-newer` to only include packages "
    r"uploaded before (?P<cutoff>\S+?)\.? The requested version, v?(?P<version>\S+?), was "
    r"published at (?P<published>\S+?)\.(?:\s|$)"
)
_FILTERED = re.compile(
    r"`(?P<name>[^`]+)` was filtered by `exclude-newer` to only include packages uploaded "
    r"before (?P<cutoff>\S+?)\.(?=\s|$)"
)
_UV_ADVICE = re.compile(r"\s*Consider using `exclude-newer-package`[^.]*\.")


def _day(timestamp: str) -> str:
    return timestamp[:10]


def in_envstore_terms(line: str) -> str:
    """``line`` with uv's exclude-newer hint reworded; any other line unchanged."""
    if "exclude-newer" not in line:
        return line
    pinned = _PINNED.search(line)
    if pinned:
        name, version = pinned["name"], pinned["version"]
        return (
            f"hint: {name} {version} was published on {_day(pinned['published'])}, after the "
            f"as-of date {_day(pinned['cutoff'])}: pin a version of {name} published before "
            "that date, or choose a later --as-of date"
        )
    line = _FILTERED.sub(
        lambda m: f"{m['name']} has only the releases published before the as-of date "
        f"{_day(m['cutoff'])} (--as-of).",
        line,
    )
    return _UV_ADVICE.sub("", line)


def as_of_hints(output: str) -> list[str]:
    """The reworded as-of hints in a uv run's ``output``, for a failure's message."""
    return [
        in_envstore_terms(line)
        for line in output.splitlines()
        if line.startswith("hint:") and "exclude-newer" in line
    ]
