"""The pipeline runner as the worker runs it: a real child process, real uv, real PyPI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from envstore.core.lockfile import LockedPackage, Lockfile
from envstore.pipeline.contract import (
    FAILURE_FILE,
    RESULT_FILE,
    BuildFailureInfo,
    BuildRequest,
    BuildResult,
)

pytestmark = pytest.mark.network

INICONFIG_200 = (
    "https://files.pythonhosted.org/packages/ef/a6/"
    "62565a6e1cf69e10f5727360368e451d4b7f58beeac6173dc9db836a5b46/iniconfig-2.0.0-py3-none-any.whl"
)
INICONFIG_200_SHA = "b6a85871a79d2e3b22d2d1b94ac2824226a63c6b741c88f7ae975f18b6778374"


@dataclass
class Run:
    code: int
    log: str
    prefix: Path
    work_dir: Path

    @property
    def result(self) -> BuildResult:
        assert not (self.work_dir / FAILURE_FILE).exists(), self.log
        return BuildResult.read(self.work_dir / RESULT_FILE)

    @property
    def failure(self) -> BuildFailureInfo:
        assert not (self.work_dir / RESULT_FILE).exists(), self.log
        return BuildFailureInfo.read(self.work_dir / FAILURE_FILE)


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture
def run_build(tmp_path: Path, uv_cache: Path) -> Any:
    def run(dependencies: list[Any], **fields: Any) -> Run:
        work_dir = tmp_path / "work"
        work_dir.mkdir()
        request = BuildRequest(
            build_id=7,
            build_key="abcd1234-20250101-000000-000000-7-demo",
            kind="pypi",
            spec={"name": "demo", "channels": [], "dependencies": dependencies},
            prefix=str(tmp_path / "envs" / "demo"),
            work_dir=str(work_dir),
            uv_cache_dir=str(uv_cache),
            conda_pkgs_dir=str(tmp_path / "pkgs"),
            repodata_cache_dir=str(tmp_path / "repodata"),
            **fields,
        )
        request.write(work_dir / "request.json")
        proc = subprocess.run(
            [sys.executable, "-m", "envstore.pipeline.runner", str(work_dir / "request.json")],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        return Run(proc.returncode, proc.stdout + proc.stderr, Path(request.prefix), work_dir)

    return run


def test_build_installs_a_locked_environment(run_build: Any) -> None:
    run = run_build(["python=3.11", {"pip": ["six==1.16.0", "pytest-timeout==2.3.1"]}])
    assert run.code == 0, run.log
    result = run.result
    by_name = {p.name: p for p in result.packages}
    assert {"six", "pytest-timeout", "pytest", "pluggy", "iniconfig", "packaging"} <= set(by_name)
    assert all(len(p.sha256) == 64 and p.url.startswith("https://") for p in result.packages)
    assert all(p.channel == "https://pypi.org/simple" for p in result.packages)
    assert (by_name["six"].requested, by_name["pytest-timeout"].requested) == (True, True)
    assert (by_name["pytest"].requested, by_name["pluggy"].requested) == (False, False)
    assert by_name["six"].version == "1.16.0"
    assert result.python_version is not None and result.python_version.startswith("3.11.")
    assert result.size > 100_000
    lock = Lockfile.from_text(result.lockfile)
    assert lock.python_version == result.python_version
    [timeout_pkg] = [p for p in lock.packages if p.name == "pytest-timeout"]
    assert "pytest" in timeout_pkg.dependencies
    assert "pytest-timeout==2.3.1" in result.pinned_yaml
    imported = subprocess.run(
        [
            str(run.prefix / "bin" / "python"),
            "-c",
            "import six, pytest_timeout; print(six.__version__)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.stdout.strip() == "1.16.0", imported.stderr
    assert "== solve" in run.log and "== install" in run.log


def test_as_of_gives_the_release_current_at_that_date(run_build: Any) -> None:
    run = run_build([{"pip": ["iniconfig"]}], as_of="2022-01-01T00:00:00")
    assert run.code == 0, run.log
    [package] = run.result.packages
    assert (package.name, package.version) == ("iniconfig", "1.1.1")
    assert Lockfile.from_text(run.result.lockfile).as_of == "2022-01-01T00:00:00"


def test_unsatisfiable_spec_fails_the_solve_and_leaves_no_prefix(run_build: Any) -> None:
    run = run_build([{"pip": ["six==99.0"]}])
    assert run.code == 1
    assert run.failure.reason == "solve_failed"
    assert "six==99.0" in run.failure.message
    assert not run.prefix.exists()


def test_lockfile_with_a_wrong_hash_installs_nothing(run_build: Any) -> None:
    wrong = INICONFIG_200_SHA[:-4] + "0000"
    package = LockedPackage("iniconfig", "2.0.0", "pip", "linux-64", INICONFIG_200, wrong)
    lock = Lockfile("linux-64", (package,), python_version=None).to_yaml()
    run = run_build([{"pip": ["iniconfig==2.0.0"]}], lockfile=lock)
    assert run.code == 1, run.log
    assert (run.failure.reason, run.failure.retryable) == ("hash_mismatch", False)
    assert not run.prefix.exists()
    assert "removing the partial environment" in run.log


def test_submitted_lockfile_is_installed_exactly_and_returned_unchanged(run_build: Any) -> None:
    package = LockedPackage(
        "iniconfig", "2.0.0", "pip", "linux-64", INICONFIG_200, INICONFIG_200_SHA
    )
    lock = Lockfile("linux-64", (package,), python_version="3.11.7").to_yaml()
    run = run_build([{"pip": ["iniconfig"]}], lockfile=lock)
    assert run.code == 0, run.log
    assert run.result.lockfile == lock
    assert [(p.name, p.version, p.requested) for p in run.result.packages] == [
        ("iniconfig", "2.0.0", True)
    ]
    assert "== solve" in run.log and "Resolved" not in run.log.split("== install")[0]


def test_missing_interpreter_is_reported_with_what_exists(run_build: Any) -> None:
    run = run_build(["python=3.9.99", {"pip": ["six"]}])
    assert run.code == 1
    failure = run.failure
    assert failure.reason == "interpreter_not_found"
    assert "'3.9.99'" in failure.message and "available: 3." in failure.message
    assert not run.prefix.exists()


def test_an_existing_prefix_is_refused_and_left_alone(run_build: Any, tmp_path: Path) -> None:
    keep = tmp_path / "envs" / "demo" / "keep.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("someone else's")
    run = run_build([{"pip": ["six"]}])
    assert (run.code, run.failure.reason) == (1, "prefix_exists")
    assert keep.read_text() == "someone else's"


def test_a_solve_over_its_time_limit_is_killed(run_build: Any) -> None:
    run = run_build([{"pip": ["six"]}], solve_timeout=0.001)
    assert run.code == 1
    assert run.failure.reason == "solve_timeout"
    assert not run.prefix.exists()
