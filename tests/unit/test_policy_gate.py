"""The build process's policy gate: a clean solution costs no extra uv run, a refused PyPI
package gets its chain from uv's annotations; and the CLI's level and KEY=VALUE parsing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from envstore.backends.pypi import parse_annotations
from envstore.cli.governance import parse_assignment, parse_level
from envstore.core.policy import SolvedPackage
from envstore.core.policy_settings import Level, merge_levels, validate_changes
from envstore.errors import BuildFailure, InvalidInput, InvalidName
from envstore.pipeline.contract import BuildRequest
from envstore.pipeline.policy_gate import gate_for

ANNOTATED = """\
certifi==2026.10.19
    # via requests
jsonpatch==1.33
    # via -r requirements.in
jsonpointer==3.12
    # via
    #   jsonpatch
    #   other-thing
requests[socks]==2.34.2
    # via -r requirements.in
"""


def test_uv_annotations_become_edges() -> None:
    assert parse_annotations(ANNOTATED) == {
        "requests": ["certifi"],
        "jsonpatch": ["jsonpointer"],
        "other-thing": ["jsonpointer"],
    }


def _request(tmp_path: Path, **settings: Any) -> BuildRequest:
    stored = validate_changes(Level("team"), settings) if settings else {}
    policy = merge_levels([(Level("team"), stored)])
    return BuildRequest(1, "k", "pypi", {}, str(tmp_path / "p"), str(tmp_path), "", "", "",
                        policy=policy.to_json())  # fmt: skip


PIP = [
    SolvedPackage("jsonpatch", "1.33", "pip", "https://pypi.org/simple", None, True),
    SolvedPackage("jsonpointer", "3.12", "pip", "https://pypi.org/simple", None, False),
]


def test_gate_asks_uv_for_edges_only_when_a_rule_is_broken(tmp_path: Path) -> None:
    asked: list[bool] = []

    def edges() -> dict[str, list[str]]:
        asked.append(True)
        return parse_annotations(ANNOTATED)

    lines: list[str] = []
    gate_for(_request(tmp_path, denied_packages=["jsonpointer <3"]), lines.append)(PIP, edges)
    assert asked == [] and len(lines) == 1
    assert re.fullmatch(r"policy: 2 package\(s\) checked in [0-9.]+ ms, none refused", lines[0])
    request = _request(tmp_path, denied_packages=[{"name": "jsonpointer", "reason": "no"}])
    with pytest.raises(BuildFailure) as failure:
        gate_for(request, lines.append)(PIP, edges)
    assert failure.value.reason == "policy_violation" and asked == [True]
    assert "pulled in by jsonpatch -> jsonpointer" in failure.value.message
    # no policy at all: nothing is evaluated, nothing logged
    gate_for(_request(tmp_path), lines.append)(PIP, edges)
    assert len(lines) == 1


def test_cli_levels_and_assignments() -> None:
    assert parse_level(None) == () and parse_level("team") == ("team",)
    assert parse_level("team/app") == ("team", "app")
    with pytest.raises(InvalidInput, match="NAMESPACE/ENVIRONMENT"):
        parse_level("a/b/c")
    with pytest.raises(InvalidName):
        parse_level("../x")
    assert parse_assignment("max_packages=40") == ("max_packages", 40)
    assert parse_assignment('conda_allowed_channels=["a"]') == ("conda_allowed_channels", ["a"])
    assert parse_assignment("freeze_date=2024-06-01") == ("freeze_date", "2024-06-01")
    assert parse_assignment("freeze_date=") == ("freeze_date", None)
    with pytest.raises(InvalidInput, match="KEY=VALUE"):
        parse_assignment("max_packages")
