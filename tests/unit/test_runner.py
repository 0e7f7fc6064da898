"""The runner's failure handling: stable reasons, cleanup of the prefix it created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envstore.errors import BuildFailure
from envstore.pipeline import runner
from envstore.pipeline.contract import FAILURE_FILE, BuildFailureInfo, BuildRequest, BuildResult


def _request(tmp_path: Path, dependencies: list[Any]) -> BuildRequest:
    return BuildRequest(
        build_id=1,
        build_key="k",
        kind="pypi",
        spec={"name": "demo", "channels": [], "dependencies": dependencies},
        prefix=str(tmp_path / "prefix"),
        work_dir=str(tmp_path),
        uv_cache_dir=str(tmp_path / "cache"),
        conda_pkgs_dir=str(tmp_path / "pkgs"),
        repodata_cache_dir=str(tmp_path / "repodata"),
    )


def test_conda_spec_sent_as_pypi_is_refused(tmp_path: Path) -> None:
    lines: list[str] = []
    outcome = runner.run(_request(tmp_path, ["numpy", {"pip": ["six"]}]), lines.append)
    assert isinstance(outcome, BuildFailureInfo)
    assert outcome.reason == "invalid_spec"


def test_unexpected_error_is_internal_and_removes_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(request: BuildRequest, log: runner.Log) -> BuildResult:
        (Path(request.prefix) / "bin").mkdir(parents=True)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner, "build_pypi", explode)
    lines: list[str] = []
    request = _request(tmp_path, [{"pip": ["six"]}])
    outcome = runner.run(request, lines.append)
    assert isinstance(outcome, BuildFailureInfo)
    assert (outcome.reason, outcome.message) == ("internal_error", "RuntimeError: disk on fire")
    assert not Path(request.prefix).exists()
    assert any("Traceback" in line for line in lines)


def test_build_failure_keeps_its_reason_and_retryable_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(request: BuildRequest, log: runner.Log) -> BuildResult:
        raise BuildFailure("network_error", "index unreachable", retryable=True)

    monkeypatch.setattr(runner, "build_pypi", offline)
    outcome = runner.run(_request(tmp_path, [{"pip": ["six"]}]), lambda line: None)
    assert outcome == BuildFailureInfo("network_error", "index unreachable", True)


def test_unreadable_request_still_leaves_a_failure_file(tmp_path: Path) -> None:
    request_file = tmp_path / "request.json"
    request_file.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "envstore.pipeline.runner", str(request_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert BuildFailureInfo.read(tmp_path / FAILURE_FILE).reason == "internal_error"


def test_a_submitted_lockfile_is_not_parsed_as_a_spec(tmp_path: Path) -> None:
    """A lockfile submission's spec is ``{name, lockfile}``; the lockfile says what to build."""
    request = _request(tmp_path, [])
    request.spec = {"name": "copy", "lockfile": {"version": 1, "package": []}}
    with pytest.raises(BuildFailure, match="unknown key"):
        runner.request_spec(request)
    request.lockfile = "version: 1\n"
    spec = runner.request_spec(request)
    assert (spec.name, spec.conda, spec.pip) == ("copy", (), ())
