"""Shared fixtures of the acceptance tests: a real ``envstore serve`` and the ``envstore`` CLI.

The server runs as a subprocess with its own store on a free port (``tests.support.server``);
each CLI step runs the installed console script with ``ENVSTORE_URL`` pointing at it, exactly
as a user types it. A module may define its own ``server``/``cli`` fixtures to change that.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import ENVSTORE, ServerProcess

__all__ = ["Cli"]


@dataclass
class Cli:
    url: str
    cwd: Path
    token: str | None = None

    def __call__(
        self, *args: str, code: int | None = 0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``envstore ARGS``; check the exit code unless ``code`` is None."""
        env = {**os.environ, "ENVSTORE_URL": self.url, "COLUMNS": "200"}
        env["XDG_CONFIG_HOME"] = str(self.cwd / "config")  # never the developer's login
        if self.token is not None:
            env["ENVSTORE_TOKEN"] = self.token
        env.pop("ENVSTORE_DEBUG", None)
        result = subprocess.run(
            [ENVSTORE, *args],
            env=env,
            input=stdin,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if code is not None:
            assert result.returncode == code, (
                f"envstore {' '.join(args)} exited {result.returncode}, expected {code}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        assert "Traceback" not in result.stderr
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``envstore serve`` on a free port with a fresh store; stopped after the module.

    Anonymous callers are administrators here (``ServerProcess``'s default); journeys about
    access control start their own server.
    """
    root = tmp_path_factory.mktemp("envstore-server")
    process = ServerProcess(root / "store").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cli(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(url=server.url, cwd=tmp_path_factory.mktemp("cli"))
