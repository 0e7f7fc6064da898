"""The README's five-minute tour, run as written against a fresh ``envstore serve``.

The ``sh`` block under "A five-minute tour" is extracted from README.md and run by bash with
``set -euo pipefail``, in an empty directory shaped like a clone (``.venv`` is this one, the
store is ``.envstore`` beside it, as ``make serve`` makes it). Only ``ENVSTORE_URL`` differs
from a user's terminal: the test server listens on a free port, not 8080. Any step that fails
as written fails the test (issue 15 item 4).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(900)]

README = Path(__file__).resolve().parents[2] / "README.md"
VENV = Path(sys.executable).parent.parent


def tour_block() -> str:
    """The first ``sh`` code block after the tour's heading."""
    text = README.read_text()
    section = text.split("## A five-minute tour", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README.md has no sh block under 'A five-minute tour'"
    return match.group(1)


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[tuple[Path, ServerProcess]]:
    (tmp_path / ".venv").symlink_to(VENV)
    # Access as configured by default: anonymous callers may do nothing.
    server = ServerProcess(tmp_path / ".envstore", env={"ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}"})
    server.start()
    try:
        yield tmp_path, server
    finally:
        server.stop()


def test_readme_tour_runs_as_written(clone: tuple[Path, ServerProcess]) -> None:
    cwd, server = clone
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVSTORE_")}
    env |= {
        "ENVSTORE_URL": server.url,
        "HOME": str(cwd),
        "XDG_CONFIG_HOME": str(cwd / "config"),
        "COLUMNS": "200",
    }
    script = "set -euo pipefail\n" + tour_block()
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # no terminal, as in CI
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the tour failed as written:\n{output}"
    assert "Traceback" not in output
    assert "signed in to" in output
    # run default/tools (1.16.0), run @2 (1.15.0), run @today (Python 3.11)
    assert re.search(r"^1\.16\.0$", result.stdout, re.MULTILINE), output
    assert re.search(r"^1\.15\.0$", result.stdout, re.MULTILINE), output
    assert re.search(r"^Python 3\.11\.\d+$", result.stdout, re.MULTILINE), output

    # Without the kept token the caller is anonymous: a 403 says so and how to sign in, and
    # an empty list says why it is empty (issue 15 item 6).
    anonymous = env | {"XDG_CONFIG_HOME": str(cwd / "nobody")}
    shown = subprocess.run(
        [str(VENV / "bin" / "envstore"), "env", "show", "default/tools"],
        env=anonymous,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 2
    assert shown.stderr.strip() == (
        f"envstore: error: request not authorized: you are anonymous (no token kept for "
        f"{server.url}); sign in with: envstore --url {server.url} login --username NAME "
        "--password-stdin"
    )
    listed = subprocess.run(
        [str(VENV / "bin" / "envstore"), "env", "list"],
        env=anonymous,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0 and "no environments" in listed.stdout
    assert "you are anonymous" in listed.stderr
