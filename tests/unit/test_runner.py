"""The runner's failure handling: stable reasons, cleanup of the prefix it created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envstore.errors import BuildFailure
from envstore.pipeline import runner
from envstore.pipeline.contract import (
    END_MARK,
    FAILURE_FILE,
    BuildFailureInfo,
    BuildRequest,
    BuildResult,
    end_line,
    parse_end,
)


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


def _serving_runner(cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "envstore.pipeline.runner", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )


def _until_end(proc: subprocess.Popen[str], nonce: str) -> tuple[list[str], tuple[int, bool]]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        ended = parse_end(line, nonce)
        if ended is not None:
            return lines, ended
        lines.append(line)
    raise AssertionError(f"the runner closed its output without ending {nonce}: {lines}")


def _send(proc: subprocess.Popen[str], nonce: str, request: Path) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"{nonce} {request}\n")
    proc.stdin.flush()


def test_a_serving_runner_runs_builds_one_after_another(tmp_path: Path) -> None:
    """Each build ends with its own end line; the runner waits for the next one in between,
    back in the directory it started in (the worker removes each build's work directory)."""
    proc = _serving_runner(tmp_path)
    try:
        for n in (1, 2):
            work = tmp_path / f"work-{n}"
            work.mkdir()
            request = _request(work, ["numpy", {"pip": ["six"]}])  # refused: a conda spec
            request.write(work / "request.json")
            _send(proc, f"nonce{n}", work / "request.json")
            lines, (code, more) = _until_end(proc, f"nonce{n}")
            assert (code, more) == (1, True)
            assert BuildFailureInfo.read(work / FAILURE_FILE).reason == "invalid_spec"
            assert any("build failed (invalid_spec)" in line for line in lines)
            assert proc.poll() is None
            assert Path(os.readlink(f"/proc/{proc.pid}/cwd")) == tmp_path
        # fd 0 of the runner (what the build's tools inherit) no longer reads the requests
        assert os.readlink(f"/proc/{proc.pid}/fd/0") == os.devnull
        assert proc.stdin is not None
        proc.stdin.close()  # no more builds: the runner leaves
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_serving_runner_leaves_after_an_internal_error(tmp_path: Path) -> None:
    proc = _serving_runner(tmp_path)
    try:
        broken = tmp_path / "work" / "request.json"
        broken.parent.mkdir()
        broken.write_text("{not json")
        _send(proc, "n1", broken)
        _lines, (code, more) = _until_end(proc, "n1")
        assert (code, more) == (1, False)
        assert BuildFailureInfo.read(broken.parent / FAILURE_FILE).reason == "internal_error"
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_end_lines_need_the_builds_nonce() -> None:
    line = end_line("secret", 0, True) + "\n"
    assert parse_end(line, "secret") == (0, True)
    assert parse_end(line, "other") is None
    assert parse_end(end_line("secret", 1, False), "secret") == (1, False)
    assert parse_end("envstore-build-end secret 0 more", "secret") is None
    assert parse_end(END_MARK + " secret x more", "secret") is None
