"""A conda user's journey through the ``envstore`` CLI against a real ``envstore serve``.

The conda packages come from a local ``file://`` channel that ``envstore.testing`` generates
(conda-forge is not reachable here; the code path is the same), the ``pip:`` section from the
real PyPI. Every step is a CLI command or a REST call against the running server.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from envstore.testing import ChannelBuilder, demo_channel
from tests.acceptance.conftest import Cli
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(900)]

PROBE = 'app && python -c "import six; print(six.__version__)"'


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> ChannelBuilder:
    return demo_channel(tmp_path_factory.mktemp("conda-channel"))


def _write_spec(path: Path, channel: ChannelBuilder, deps: list[Any]) -> Path:
    spec = {"name": "sci", "channels": [channel.url], "dependencies": deps}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _create(cli: Cli, spec: Path, *args: str, code: int = 0) -> tuple[int, str]:
    """``env create -f SPEC ARGS --wait``; the build id and the whole output."""
    result = cli("env", "create", "-f", str(spec), *args, "--wait", code=code)
    match = re.search(r"^build (\d+) queued for ", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return int(match.group(1)), result.stdout + result.stderr


def _run(cli: Cli, ref: str) -> list[str]:
    return cli("run", ref, "--", "sh", "-c", PROBE).stdout.strip().splitlines()


def _records(server: ServerProcess, build_id: int) -> list[tuple[Any, ...]]:
    response = httpx.get(f"{server.url}/api/v1/build/{build_id}/packages/", timeout=30)
    assert response.status_code == 200, response.text
    return sorted(
        (
            p["manager"],
            p["name"],
            p["version"],
            p["build"],
            p["sha256"],
            p["requested"],
            p["channel"]["name"],
        )
        for p in response.json()["data"]
    )


def test_conda_journey(
    cli: Cli, server: ServerProcess, channel: ChannelBuilder, tmp_path: Path
) -> None:
    spec = _write_spec(
        tmp_path / "environment.yml", channel, ["python", "app", {"pip": ["six==1.16.0"]}]
    )
    first, output = _create(cli, spec)
    assert f"build {first} COMPLETED" in output

    # The lockfile holds both managers, every entry with its hashes.
    lock_text = cli("lockfile", "default/sci").stdout
    lock = yaml.safe_load(lock_text)
    managers = {entry["name"]: entry["manager"] for entry in lock["package"]}
    assert managers == {"app": "conda", "liba": "conda", "python": "conda", "six": "pip"}
    for entry in lock["package"]:
        assert re.fullmatch(r"[0-9a-f]{64}", entry["hash"]["sha256"]), entry
        if entry["manager"] == "conda":
            assert re.fullmatch(r"[0-9a-f]{32}", entry["hash"]["md5"]), entry
            assert entry["url"].startswith(channel.url + "/")

    # ``envstore run`` sees the conda entry point and the pip package.
    assert _run(cli, "default/sci") == ["hello from app, liba 2.0", "1.16.0"]

    # A changed spec is a new build, and becomes current.
    _write_spec(spec, channel, ["python", "app", "liba <2", {"pip": ["six==1.16.0"]}])
    second, output = _create(cli, spec)
    assert second != first and f"build {second} COMPLETED" in output
    assert _run(cli, "default/sci") == ["hello from app, liba 1.0", "1.16.0"]

    # Rollback makes build 1 current again; both builds stay addressable.
    cli("env", "rollback", "default/sci", str(first))
    assert _run(cli, "default/sci") == ["hello from app, liba 2.0", "1.16.0"]
    assert _run(cli, f"default/sci@{second}")[0] == "hello from app, liba 1.0"

    # The lockfile of build 1, submitted as is, rebuilds an identical environment.
    lock_file = tmp_path / "sci.conda-lock.yml"
    cli("lockfile", f"default/sci@{first}", "-o", str(lock_file))
    assert lock_file.read_text() == lock_text
    replica, output = _create(cli, lock_file, "--lockfile", "--name", "replica")
    assert f"build {replica} COMPLETED" in output
    assert cli("lockfile", "default/replica").stdout == lock_text
    assert _records(server, replica) == _records(server, first)
    assert _run(cli, "default/replica") == ["hello from app, liba 2.0", "1.16.0"]


def test_as_of_date_picks_the_older_version(
    cli: Cli, channel: ChannelBuilder, tmp_path: Path
) -> None:
    spec = _write_spec(tmp_path / "dated.yml", channel, ["python", "app", {"pip": ["six"]}])
    build, _ = _create(cli, spec, "--name", "dated", "--as-of", "2023-06-01")
    assert _run(cli, f"default/dated@{build}") == ["hello from app, liba 1.0", "1.16.0"]
    shown = cli("build", "show", str(build), "--json").stdout
    assert '"as_of": "2023-06-01T00:00:00"' in shown


def test_conflict_fails_readably(cli: Cli, channel: ChannelBuilder, tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "conflict.yml", channel, ["needs-old", "needs-new"])
    build, output = _create(cli, spec, "--name", "conflict", code=1)
    assert f"build {build} FAILED" in output
    shown = yaml.safe_load(cli("build", "show", str(build), "--json").stdout)
    assert shown["status"] == "FAILED"
    assert shown["status_info"].startswith("solve_failed: ")
    assert "needs-old" in shown["status_info"] and "liba" in shown["status_info"]
    assert "liba" in cli("build", "logs", str(build)).stdout
