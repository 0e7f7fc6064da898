"""The conda backend against real local channels built by envstore.testing (no conda-forge)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from envstore.backends import conda
from envstore.core.lockfile import Lockfile
from envstore.errors import BuildFailure
from envstore.pipeline.contract import BuildRequest
from envstore.testing.channels import ChannelBuilder, add_malicious_corpus, host_subdir

OLD = datetime(2023, 1, 1, tzinfo=UTC)
NEW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> ChannelBuilder:
    builder = ChannelBuilder(tmp_path_factory.mktemp("channel"))
    builder.add("liba", "1.0", files={"share/liba/version.txt": b"1.0\n"}, timestamp=OLD)
    builder.add(
        "liba", "2.0", files={"share/liba/version.txt": b"2.0\n"}, timestamp=NEW, fmt=".tar.bz2"
    )
    builder.add(
        "app",
        "1.0",
        deps=["liba >=1"],
        entry_points={"app": "echo hello from app"},
        timestamp=OLD,
        summary="the demo app",
    )
    builder.add("needs-old", "1.0", deps=["liba <2"], timestamp=OLD)
    builder.add("needs-new", "1.0", deps=["liba >=2"], timestamp=OLD)
    builder.add("glibc-hungry", "1.0", deps=["__glibc >=99"], timestamp=OLD)
    bulky = {f"share/bulky/{n:02d}.dat": bytes([n]) * 4096 for n in range(40)}
    builder.add("bulky", "1.0", files=bulky, timestamp=OLD)
    builder.add_python_wrapper()
    add_malicious_corpus(builder)
    builder.index()
    return builder


@pytest.fixture
def make_request(tmp_path: Path, channel: ChannelBuilder) -> Callable[..., BuildRequest]:
    shared = tmp_path / "store"
    counter = iter(range(1, 1000))

    def make(deps: list[Any], **kwargs: Any) -> BuildRequest:
        number = next(counter)
        work = tmp_path / f"work{number}"
        work.mkdir()
        spec = {"name": "demo", "channels": [channel.url], "dependencies": deps}
        return BuildRequest(
            build_id=number,
            build_key=f"key-{number}",
            kind="conda",
            spec=spec,
            # Deep inside a sentinel tree so that an escape lands somewhere we watch.
            prefix=str(tmp_path / "sentinel" / "a" / "b" / "c" / f"prefix{number}"),
            work_dir=str(work),
            uv_cache_dir=str(shared / "uv"),
            conda_pkgs_dir=str(shared / "pkgs"),
            repodata_cache_dir=str(shared / "repodata"),
            **({"channel_allow": [f"file://{channel.root.parent}/"]} | kwargs),
        )

    return make


def _build(request: BuildRequest) -> Any:
    lines: list[str] = []
    return conda.build(request, lines.append)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def test_solve_and_install_links_files_and_entry_points(make_request: Any) -> None:
    request = make_request(["app"])
    result = _build(request)
    prefix = Path(request.prefix)
    assert (prefix / "share/liba/version.txt").read_text() == "2.0\n"
    out = subprocess.run([prefix / "bin/app"], capture_output=True, text=True, check=True)
    assert out.stdout == "hello from app\n"
    by_name = {p.name: p for p in result.packages}
    assert set(by_name) == {"app", "liba"}
    assert by_name["app"].requested and not by_name["liba"].requested
    assert by_name["app"].summary == "the demo app"
    assert by_name["liba"].channel.rstrip("/") == make_request([]).spec["channels"][0].rstrip("/")
    assert len(by_name["liba"].sha256) == 64
    assert "liba=2.0=0" in result.pinned_yaml


def _apparent_size(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir())


def test_size_is_what_the_files_take_and_needs_no_walk_of_the_prefix(make_request: Any) -> None:
    """The size comes from the verified archives and the metadata, not from a walk of the
    prefix; it must still agree with one, on a first build and on a build whose archives
    were verified by an earlier one."""
    first = make_request(["app", "bulky"])
    second = make_request(["app", "bulky"])
    for request in (first, second):
        result = _build(request)
        actual = _apparent_size(Path(request.prefix))
        assert actual > 40 * 4096
        # what no archive holds (the entry point rattler writes) is the only difference
        assert abs(result.size - actual) <= actual * 0.02, (result.size, actual)


def test_as_of_picks_the_older_version(make_request: Any) -> None:
    request = make_request(["liba"], as_of="2023-06-01T00:00:00")
    result = _build(request)
    assert [(p.name, p.version) for p in result.packages] == [("liba", "1.0")]


def test_conflict_fails_with_rattlers_explanation(make_request: Any) -> None:
    with pytest.raises(BuildFailure) as caught:
        _build(make_request(["needs-old", "needs-new"]))
    assert caught.value.reason == "solve_failed"
    assert "liba" in caught.value.message
    assert not caught.value.retryable


def test_virtual_package_requirement(make_request: Any) -> None:
    with pytest.raises(BuildFailure) as caught:
        _build(make_request(["glibc-hungry"]))
    assert caught.value.reason == "solve_failed"
    assert "__glibc" in caught.value.message
    request = make_request(["glibc-hungry"], extra={"virtual_packages": {"__glibc": "99.1"}})
    assert [p.name for p in _build(request).packages] == ["glibc-hungry"]


def test_unreachable_channel_is_retryable(make_request: Any, tmp_path: Path) -> None:
    request = make_request(["app"])
    missing = (tmp_path / "no-such-channel").as_uri()
    request.spec["channels"] = [missing]
    with pytest.raises(BuildFailure) as caught:
        _build(request)
    assert caught.value.reason == "channel_unreachable"
    assert caught.value.retryable
    assert f"cannot reach channel {missing}/" in caught.value.message


def test_lockfile_roundtrip_is_byte_identical(make_request: Any) -> None:
    """M4: the same lockfile installed twice gives the same records and lockfile text."""
    first = _build(make_request(["app"], as_of="2023-06-01T00:00:00"))
    lock = Lockfile.from_text(first.lockfile)
    assert {(p.name, p.version) for p in lock.packages} == {("app", "1.0"), ("liba", "1.0")}
    second = _build(make_request(["app"], lockfile=first.lockfile))
    third = _build(make_request(["app"], lockfile=first.lockfile))
    assert second.lockfile == third.lockfile
    assert second.packages == third.packages
    assert [(p.name, p.version, p.sha256) for p in second.packages] == [
        (p.name, p.version, p.sha256) for p in first.packages
    ]


def test_lockfile_with_wrong_hash_installs_nothing(make_request: Any) -> None:
    """I8: a wrong sha256 fails hash_mismatch, not retryable, and nothing is installed."""
    good = _build(make_request(["app"]))
    lock = Lockfile.from_text(good.lockfile)
    tampered = tuple(replace(p, sha256="0" * 64) if p.name == "liba" else p for p in lock.packages)
    text = replace(lock, packages=tampered).to_yaml()
    request = make_request(["app"], lockfile=text)
    with pytest.raises(BuildFailure) as caught:
        _build(request)
    assert caught.value.reason == "hash_mismatch"
    assert not caught.value.retryable
    assert "liba" in caught.value.message
    assert not Path(request.prefix).exists()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device", "huge"])
def test_malicious_archive_is_refused(make_request: Any, tmp_path: Path, kind: str) -> None:
    """I7: each hostile archive is refused and nothing is written outside the prefix."""
    request = make_request([f"evil-{kind}"])
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir(exist_ok=True)
    before_tmp = set(os.listdir("/tmp"))
    with pytest.raises(BuildFailure) as caught:
        _build(request)
    assert caught.value.reason == "unsafe_package"
    assert caught.value.message.startswith(f"evil-{kind}-1.0-0: ")
    assert _files(sentinel) == set()
    assert not (Path(request.conda_pkgs_dir) / f"evil-{kind}-1.0-0").exists()
    assert set(os.listdir("/tmp")) - before_tmp == set()


def test_solve_only_lists_what_would_be_installed(channel: ChannelBuilder, tmp_path: Path) -> None:
    rows = conda.solve_only([channel.url], ["app"], "noarch", cache_dir=str(tmp_path / "repodata"))
    assert [(r["name"], r["version"]) for r in rows] == [("app", "1.0"), ("liba", "2.0")]
    assert all(r["channel"] == channel.url + "/" and r["size"] > 0 for r in rows)


def test_python_wrapper_is_a_working_interpreter(make_request: Any) -> None:
    request = make_request(["python"])
    result = _build(request)
    prefix = Path(request.prefix)
    out = subprocess.run(
        [prefix / "bin/python", "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(prefix)
    assert result.python_version is not None
    assert host_subdir() in next(p.url for p in result.packages if p.name == "python")


@pytest.mark.network
def test_pip_section_installs_into_the_prefix(make_request: Any) -> None:
    request = make_request(["python", "app", {"pip": ["six==1.16.0"]}])
    result = _build(request)
    prefix = Path(request.prefix)
    assert list(prefix.glob("lib/python*/site-packages/six.py"))
    pip = [p for p in result.packages if p.manager == "pip"]
    assert [(p.name, p.version, p.requested) for p in pip] == [("six", "1.16.0", True)]
    lock = Lockfile.from_text(result.lockfile)
    assert {p.manager for p in lock.packages} == {"conda", "pip"}
    again = _build(
        make_request(["python", "app", {"pip": ["six==1.16.0"]}], lockfile=result.lockfile)
    )
    assert again.lockfile == result.lockfile
