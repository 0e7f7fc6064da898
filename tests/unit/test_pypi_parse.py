"""The pure parts of the PyPI backend: pylock parsing, error classification, sizes, YAML."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from packaging.tags import platform_tags

from envstore.backends import pypi
from envstore.backends.installed import InstalledDistribution, prefix_size, with_dependencies
from envstore.core.lockfile import LockedPackage, Lockfile
from envstore.core.specs import EnvironmentSpec, parse_specification
from envstore.errors import BuildFailure
from envstore.pipeline.lock import pinned_yaml

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
HOST_TAG = next(iter(platform_tags()))


def _pylock(wheels: str, sdist: str = "") -> str:
    return f"""
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "Charset_Normalizer"
version = "3.3.2"
{sdist}
wheels = [{wheels}]
"""


def _wheel(filename: str, sha: str) -> str:
    return f'{{ url = "https://files.example/{filename}", hashes = {{ sha256 = "{sha}" }} }}'


def test_binary_wheel_for_the_interpreter_beats_the_pure_python_wheel() -> None:
    wheels = ", ".join(
        [
            _wheel("charset_normalizer-3.3.2-py3-none-any.whl", SHA_A),
            _wheel(f"charset_normalizer-3.3.2-cp311-cp311-{HOST_TAG}.whl", SHA_B),
        ]
    )
    [package] = pypi.parse_pylock(
        _pylock(wheels),
        python_version="3.11.7",
        requested=frozenset({"charset-normalizer"}),
        platform="linux-64",
    )
    assert package.sha256 == SHA_B
    assert package.url.endswith(f"cp311-cp311-{HOST_TAG}.whl")
    assert package.requested is True
    assert (package.manager, package.platform, package.version) == ("pip", "linux-64", "3.3.2")


def test_wheel_for_another_python_is_not_picked_when_a_compatible_one_exists() -> None:
    wheels = ", ".join(
        [
            _wheel(f"charset_normalizer-3.3.2-cp312-cp312-{HOST_TAG}.whl", SHA_A),
            _wheel("charset_normalizer-3.3.2-py3-none-any.whl", SHA_B),
        ]
    )
    [package] = pypi.parse_pylock(
        _pylock(wheels), python_version="3.11.2", requested=frozenset(), platform="linux-64"
    )
    assert package.sha256 == SHA_B
    assert package.requested is False


def test_sdist_is_used_when_there_is_no_wheel() -> None:
    url = "https://files.example/cn-3.3.2.tar.gz"
    sdist = f'sdist = {{ url = "{url}", hashes = {{ sha256 = "{SHA_C}" }} }}'
    [package] = pypi.parse_pylock(
        _pylock("", sdist), python_version="3.11.7", requested=frozenset(), platform="linux-64"
    )
    assert (package.url, package.sha256) == ("https://files.example/cn-3.3.2.tar.gz", SHA_C)


def test_artifact_without_sha256_fails_the_solve() -> None:
    text = _pylock('{ url = "https://files.example/cn-3.3.2-py3-none-any.whl" }')
    with pytest.raises(BuildFailure) as info:
        pypi.parse_pylock(text, python_version="3.11.7", requested=frozenset(), platform="linux-64")
    assert info.value.reason == "solve_failed"


@pytest.mark.parametrize(
    ("output", "reason", "retryable"),
    [
        (
            "error: No solution found when resolving dependencies\n  cause: six==99 cannot be",
            "solve_failed",
            False,
        ),
        ("error: Failed to download `x`\n  cause: Hash mismatch for `x`", "hash_mismatch", False),
        ("error: failed to write: No space left on device (os error 28)", "no_space", True),
        (
            "error: Request failed after 3 retries\n  cause: Failed to fetch: http://x/",
            "network_error",
            True,
        ),
        ("error: something new", "install_failed", False),
    ],
)
def test_uv_failures_get_stable_reasons(output: str, reason: str, retryable: bool) -> None:
    failure = pypi.classify_uv_failure(
        "Resolved 3 packages\n" + output, default_reason="install_failed"
    )
    assert (failure.reason, failure.retryable) == (reason, retryable)
    assert not failure.message.startswith("Resolved")
    assert not failure.message.startswith("error:")


def test_as_of_is_passed_to_uv_as_utc() -> None:
    assert pypi.exclude_newer("2022-01-01T00:00:00") == "2022-01-01T00:00:00Z"
    assert pypi.exclude_newer("2022-01-01T02:00:00+02:00") == "2022-01-01T00:00:00Z"
    assert pypi.exclude_newer("2022-01-01") == "2022-01-01T00:00:00Z"


def test_host_platform_is_a_conda_subdir() -> None:
    expected_os = {"linux": "linux", "darwin": "osx", "win32": "win"}[sys.platform]
    os_name, arch = pypi.host_platform().split("-")
    assert os_name == expected_os
    assert arch in {"64", "aarch64", "arm64", "ppc64le", "s390x"}


def test_prefix_size_counts_hardlinked_files_once(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    data = tmp_path / "sub" / "data.bin"
    data.write_bytes(os.urandom(64 * 1024))
    single = prefix_size(tmp_path)
    assert single >= 64 * 1024
    os.link(data, tmp_path / "link.bin")
    assert prefix_size(tmp_path) == single
    (tmp_path / "symlink").symlink_to(data)
    assert prefix_size(tmp_path) < single + 64 * 1024  # the target is not counted again
    (tmp_path / "copy.bin").write_bytes(data.read_bytes())
    assert prefix_size(tmp_path) >= single + 64 * 1024


def test_dependencies_are_limited_to_the_locked_set() -> None:
    def locked(name: str) -> LockedPackage:
        return LockedPackage(name, "1.0", "pip", "linux-64", f"https://x/{name}.whl", SHA_A)

    installed = {
        "pytest-timeout": InstalledDistribution(
            "pytest-timeout", "1.0", {"pytest": ">=7.0.0", "colorama": "*"}, None, None
        )
    }
    packages = with_dependencies([locked("pytest-timeout"), locked("pytest")], installed)
    assert packages[0].dependencies == {"pytest": ">=7.0.0"}
    assert packages[1].dependencies == {}


def test_pinned_yaml_parses_back_to_the_same_pins() -> None:
    spec = EnvironmentSpec(name="demo", pip=("six",), variables={"A": "1"})
    lock = Lockfile(
        platform="linux-64",
        packages=(LockedPackage("six", "1.16.0", "pip", "linux-64", "https://x/six.whl", SHA_A),),
        python_version="3.11.7",
    )
    pinned = parse_specification(pinned_yaml(spec, lock))
    assert pinned.python == "3.11.7"
    assert pinned.pip == ("six==1.16.0",)
    assert pinned.kind == "pypi"
    assert (pinned.name, pinned.variables) == ("demo", {"A": "1"})


def test_stream_command_forwards_lines_and_kills_on_timeout() -> None:
    lines: list[str] = []
    code, tail = pypi.stream_command(
        [sys.executable, "-c", "print('one'); print('two')"], lines.append, env=dict(os.environ)
    )
    assert (code, lines, tail) == (0, ["one", "two"], "one\ntwo")
    with pytest.raises(TimeoutError):
        pypi.stream_command(
            [sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"],
            lines.append,
            timeout=0.5,
            env=dict(os.environ),
        )
