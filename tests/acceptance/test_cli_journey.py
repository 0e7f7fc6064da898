"""A user's journey through the ``envstore`` CLI against a real ``envstore serve``.

Everything goes through subprocesses exactly as a user types it: the server is started with its
own store directory on a free port, and each step runs the installed ``envstore`` console script
with ``ENVSTORE_URL`` pointing at it. Builds resolve and install real packages from PyPI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.acceptance.conftest import Cli
from tests.support.server import ENVSTORE, ServerProcess, free_port

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(900)]

VERSION_PROBE = "import six, iniconfig; print(six.__version__)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``envstore serve`` with access control as shipped: nobody may do anything anonymously."""
    root = tmp_path_factory.mktemp("envstore-server")
    process = ServerProcess(root / "store", env={"ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}"}).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cli(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI signed in as an administrator, with a token whose primary namespace is
    ``default`` (so ``env create`` without ``-n`` lands there, as in the embedded quick start)."""
    cli = Cli(url=server.url, cwd=tmp_path_factory.mktemp("cli"))
    subprocess.run(
        [ENVSTORE, "user", "add", "admin", "--admin", "--password-stdin"],
        env={**os.environ, "ENVSTORE_STORE_DIR": str(server.store)},
        input="journey-password\n",
        text=True,
        check=True,
        capture_output=True,
    )
    cli("login", "--username", "admin", "--password-stdin", stdin="journey-password\n")
    cli.token = cli("token", "create", "--namespace", "default").stdout.strip()
    return cli


def _submit(cli: Cli, spec: Path, *args: str, code: int = 0) -> tuple[int, str]:
    """``env create -f SPEC ARGS --wait``; return the build id and the whole output."""
    result = cli("env", "create", "-f", str(spec), *args, "--wait", code=code)
    match = re.search(r"^build (\d+) queued for ", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return int(match.group(1)), result.stdout + result.stderr


def _probe(cli: Cli, ref: str, program: str = VERSION_PROBE) -> str:
    return cli("run", ref, "--", "python", "-c", program).stdout.strip()


def _assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.stderr.startswith("envstore: error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr


def test_journey(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "tools.txt"
    spec.write_text("six==1.16.0\niniconfig==2.0.0\n")

    first, output = _submit(cli, spec, "--description", "journey tools")
    assert f"build {first} COMPLETED" in output
    assert "default/tools" in cli("env", "list").stdout

    lock = yaml.safe_load(cli("lockfile", "default/tools").stdout)
    packages = {entry["name"]: entry for entry in lock["package"]}
    assert {"six", "iniconfig"} <= set(packages)
    assert packages["six"]["version"] == "1.16.0"
    for entry in lock["package"]:
        assert re.fullmatch(r"[0-9a-f]{64}", entry["hash"]["sha256"]), entry
    assert _probe(cli, "default/tools") == "1.16.0"

    spec.write_text("six==1.15.0\niniconfig==2.0.0\n")
    second, _ = _submit(cli, spec)
    assert second != first
    keys = {
        build_id: json.loads(cli("build", "show", str(build_id), "--json").stdout)["build_key"]
        for build_id in (first, second)
    }
    assert keys[first] != keys[second]
    assert _probe(cli, "default/tools") == "1.15.0"

    cli("env", "rollback", "default/tools", str(first))
    assert _probe(cli, "default/tools") == "1.16.0"
    assert _probe(cli, f"default/tools@{first}") == "1.16.0"
    assert _probe(cli, f"default/tools@{second}") == "1.15.0"
    assert _probe(cli, f"default/tools@{keys[second]}") == "1.15.0"
    today = datetime.now(UTC).date().isoformat()
    assert _probe(cli, f"default/tools@{today}") in {"1.16.0", "1.15.0"}
    shown = json.loads(cli("env", "show", "default/tools", "--json").stdout)
    assert shown["current_build_id"] == first

    builds = cli("build", "list", "--env", "default/tools", "--json").stdout
    assert {first, second} <= {build["id"] for build in json.loads(builds)}
    assert cli("build", "logs", str(first)).stdout.strip()


def test_as_of_date_solves_against_the_index_of_that_day(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "old.txt"
    spec.write_text("iniconfig\nsix\n")
    build, _ = _submit(cli, spec, "-n", "history", "--as-of", "2020-01-01")
    versions = _probe(
        cli,
        f"history/old@{build}",
        "import six, importlib.metadata as m; print(m.version('iniconfig'), six.__version__)",
    )
    iniconfig_version, six_version = versions.split()
    assert iniconfig_version in {"1.0.0", "1.1.1"}
    assert six_version == "1.13.0"


def test_failed_build_exits_1_with_one_status_line(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "broken.txt"
    spec.write_text("six==1.16.0\nenvstore-no-such-package-xyz==1.0\n")
    build, _ = _submit(cli, spec, code=1)
    result = cli("build", "logs", str(build), "--follow", code=1)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"build {build} FAILED")
    assert "\n" not in last
    failed = json.loads(cli("build", "list", "--status", "failed", "--json").stdout)
    assert build in {entry["id"] for entry in failed}
    assert {entry["status"] for entry in failed} == {"FAILED"}
    _assert_one_line_error(
        cli("run", f"default/broken@{build}", "--", "true", code=2), "only a COMPLETED build"
    )


def test_bad_input_exits_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    missing = cli("env", "create", "-f", str(tmp_path / "absent.yml"), code=2)
    _assert_one_line_error(missing, "no such file")
    _assert_one_line_error(cli("env", "show", "../x/y", code=2), "namespace '..'")
    _assert_one_line_error(cli("run", "../x/y", "--", "true", code=2), "namespace '..'")
    _assert_one_line_error(cli("env", "show", "default/no-such-env", code=2), "")
    _assert_one_line_error(cli("build", "show", "999999", code=2), "")
    _assert_one_line_error(cli("lockfile", "default/no-such-env@1", code=2), "")


def test_unreachable_server_exits_3(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("--url", url, "env", "list", code=3)
    _assert_one_line_error(result, f"cannot reach envstore at {url}")
