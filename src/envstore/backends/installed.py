"""Reading what a PyPI build installed, with the environment's interpreter started early.

After ``uv pip sync`` the environment's own interpreter lists its distributions (the check that
the lock arrived whole, and the dependencies, summaries and licenses of the records). Its
start-up and ``importlib.metadata``'s imports took ~60 ms of every build after the install;
:class:`InstalledReader` starts it before the install and lets it read once the install is
done, so only the reading itself is left on the build's path. Distributions are listed when
it is told, never before: what the install added is all there.
"""

from __future__ import annotations

import subprocess
from types import TracebackType

from envstore.backends import pypi

__all__ = ["InstalledReader"]


class InstalledReader:
    """``with InstalledReader(python) as reader: <install>; installed = reader.read()``."""

    def __init__(self, python: str) -> None:
        self.process = subprocess.Popen(
            [*pypi.metadata_command(python), "--when-told"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, pypi.InstalledDistribution]:
        """The installed distributions, read now."""
        stdout, stderr = self.process.communicate("go\n")
        return pypi.parse_installed(self.process.returncode, stdout, stderr)

    def __enter__(self) -> InstalledReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:  # the install failed: it is not needed any more
            self.process.kill()
        self.process.wait()
