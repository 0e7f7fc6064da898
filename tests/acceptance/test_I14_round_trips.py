"""I14 and issue 15: a COMPLETED build's own pinned YAML, and its lockfile, rebuild the same
package set; the solve-only route answers for the same pins.

Three environments, one per kind: conda (a generated ``file://`` channel with the host-python
wrapper), PyPI (real small packages from PyPI) and mixed conda + pip. Every step is the CLI or
a REST call against a real ``envstore serve``.
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


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> ChannelBuilder:
    return demo_channel(tmp_path_factory.mktemp("conda-channel"))


def _specs(channel: ChannelBuilder) -> dict[str, dict[str, Any]]:
    return {
        "conda": {"channels": [channel.url], "dependencies": ["python", "app"]},
        "pypi": {"dependencies": ["python=3.11", {"pip": ["six==1.16.0", "iniconfig==2.0.0"]}]},
        "mixed": {
            "channels": [channel.url],
            "dependencies": ["python", "app", {"pip": ["six==1.16.0"]}],
        },
    }


def _create(cli: Cli, path: Path, *args: str) -> int:
    """``env create -f PATH ARGS --wait``: the id of a build that COMPLETED."""
    result = cli("env", "create", "-f", str(path), *args, "--wait")
    match = re.search(r"^build (\d+) queued for ", result.stdout, re.MULTILINE)
    assert match, result.stdout
    build_id = int(match.group(1))
    assert f"build {build_id} COMPLETED" in result.stdout + result.stderr
    return build_id


def _package_set(server: ServerProcess, build_id: int) -> set[tuple[str, str, str, str, str]]:
    response = httpx.get(f"{server.url}/api/v1/build/{build_id}/packages/", timeout=30)
    assert response.status_code == 200, response.text
    return {
        (p["manager"], p["name"], p["version"], p["build"], p["sha256"])
        for p in response.json()["data"]
    }


@pytest.mark.parametrize("kind", ["conda", "pypi", "mixed"])
def test_I14_pinned_yaml_and_lockfile_rebuild_the_same_packages(
    kind: str, cli: Cli, server: ServerProcess, channel: ChannelBuilder, tmp_path: Path
) -> None:
    spec = tmp_path / "environment.yml"
    spec.write_text(yaml.safe_dump({"name": kind, **_specs(channel)[kind]}))
    original = _create(cli, spec)
    packages = _package_set(server, original)
    assert packages
    # The same spec again: no new build, and no old log replayed as if building (item 9).
    again = cli("env", "create", "-f", str(spec), "--wait")
    assert again.stdout == f"unchanged: build {original} is current (COMPLETED)\n"

    pinned = tmp_path / "pinned.yml"
    cli("artifact", str(original), "yaml", "-o", str(pinned))
    if kind != "pypi":  # what conda env export writes, and what used to be refused
        assert re.search(r"- app=1\.0=\w+", pinned.read_text()), pinned.read_text()
    from_yaml = _create(cli, pinned, "--name", f"{kind}-from-yaml")
    assert _package_set(server, from_yaml) == packages

    lock = tmp_path / "env.conda-lock.yml"
    cli("lockfile", f"default/{kind}@{original}", "-o", str(lock))
    from_lock = _create(cli, lock, "--lockfile", "--name", f"{kind}-from-lock")
    assert _package_set(server, from_lock) == packages

    # The solve-only route answers for the pins too: what builds, solves (issue 15 item 2).
    data = yaml.safe_load(pinned.read_text())
    conda = [d for d in data["dependencies"] if isinstance(d, str)]
    pip = next((d["pip"] for d in data["dependencies"] if isinstance(d, dict)), [])
    params = [("channel", c) for c in data.get("channels") or []]
    params += [("conda", c) for c in conda] + [("pip", p) for p in pip]
    answer = httpx.get(f"{server.url}/api/v1/specification/", params=params, timeout=120)
    assert answer.status_code == 200, answer.text
    solved = {(row["name"], row["version"]) for row in answer.json()["solve"]}
    expected = {(name, version) for _manager, name, version, _build, _sha in packages}
    if kind == "pypi":  # a venv's interpreter is the host's, not a package of the solve
        expected = {(n, v) for n, v in expected if n != "python"}
    assert solved == expected


def test_solve_only_pypi_without_a_channel(server: ServerProcess) -> None:
    """``?pip=six==1.16.0`` alone is a PyPI environment: it solves, with no channel."""
    answer = httpx.get(
        f"{server.url}/api/v1/specification/", params={"pip": "six==1.16.0"}, timeout=120
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["solve"]
    assert [(r["name"], r["version"]) for r in rows] == [("six", "1.16.0")]
    assert isinstance(rows[0]["size"], int) and isinstance(rows[0]["channel_id"], int)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"conda": "numpy >=>=1", "channel": "conda-forge"}, "'numpy >=>=1'"),
        ({"conda": "app"}, "at least one channel"),
        ({}, "at least one package"),
    ],
)
def test_solve_only_bad_queries_are_400_naming_the_problem(
    server: ServerProcess, params: dict[str, str], fragment: str
) -> None:
    answer = httpx.get(f"{server.url}/api/v1/specification/", params=params, timeout=30)
    assert answer.status_code == 400, answer.text
    assert fragment in answer.json()["message"]


def test_I14_bad_match_spec_is_400_at_submit(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yml"
    spec.write_text("name: bad\nchannels: [conda-forge]\ndependencies: ['numpy >=>=1']\n")
    result = cli("env", "create", "-f", str(spec), code=2)
    assert "invalid conda dependency 'numpy >=>=1'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_build_list_marks_current_and_limit_keeps_the_newest_env_show_counts(
    cli: Cli, tmp_path: Path
) -> None:
    """Issue 15 items 7 and 8."""
    spec = tmp_path / "listing.txt"
    spec.write_text("six==1.16.0\n")
    first = _create(cli, spec)
    spec.write_text("six==1.15.0\niniconfig==2.0.0\n")
    second = _create(cli, spec)
    cli("env", "rollback", "default/listing", str(first))
    rows = _table(cli("build", "list", "--env", "default/listing").stdout)
    assert [row[:3] for row in rows] == [
        ["", str(second), "default/listing"],
        ["*", str(first), "default/listing"],
    ]
    newest = _table(cli("build", "list", "--env", "default/listing", "--limit", "1").stdout)
    assert [row[1] for row in newest] == [str(second)]
    shown = cli("env", "show", "default/listing").stdout
    assert re.search(r"^packages\s+1\s*$", shown, re.MULTILINE), shown
    assert re.search(r"^current\s+yes\s*$", shown, re.MULTILINE), shown
    shown = cli("build", "show", str(second)).stdout
    assert re.search(r"^packages\s+2\s*$", shown, re.MULTILINE), shown
    assert re.search(r"^current\s+no\s*$", shown, re.MULTILINE), shown


def _table(text: str) -> list[list[str]]:
    """The body rows of a CLI table, cell by cell."""
    rows = [[cell.strip() for cell in line.split("│")] for line in text.splitlines()]
    return [row for row in rows if len(row) > 1 and row[1] != "id"]


def test_as_of_conflict_names_the_pin_in_envstore_terms(cli: Cli, tmp_path: Path) -> None:
    """Issue 15 item 12: no uv option the user cannot set, in the log or the status."""
    spec = tmp_path / "dated.txt"
    spec.write_text("six==1.16.0\n")
    result = cli("env", "create", "-f", str(spec), "--as-of", "2020-01-01", "--wait", code=1)
    output = result.stdout + result.stderr
    assert "exclude-newer" not in output
    hint = (
        "six 1.16.0 was published on 2021-05-05, after the as-of date 2020-01-01: pin a version "
        "of six published before that date, or choose a later --as-of date"
    )
    assert f"hint: {hint}" in result.stdout  # the log, as it streamed
    assert hint in result.stderr.splitlines()[-1]  # the final status line
