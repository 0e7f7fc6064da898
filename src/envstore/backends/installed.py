"""Reading what a PyPI build installed: its distributions' metadata, read by the environment's
own interpreter (started early), and the bytes its prefix takes on disk.

After ``uv pip sync`` the environment's own interpreter lists its distributions (the check that
the lock arrived whole, and the dependencies, summaries and licenses of the records). Its
start-up and ``importlib.metadata``'s imports took ~60 ms of every build after the install;
:class:`InstalledReader` starts it before the install and lets it read once the install is
done, so only the reading itself is left on the build's path. Distributions are listed when
it is told, never before: what the install added is all there.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from packaging.markers import InvalidMarker, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from envstore.core.lockfile import LockedPackage
from envstore.errors import BuildFailure

__all__ = [
    "InstalledDistribution",
    "InstalledReader",
    "installed_distributions",
    "metadata_command",
    "parse_installed",
    "prefix_size",
    "with_dependencies",
]

_MAX_LICENSE = 120

_METADATA_SCRIPT = """
import json, os, platform, sys
from importlib.metadata import distributions
if sys.argv[1:] == ["--when-told"]:  # started before the install: read once it is done
    sys.stdin.readline()
def full(info):
    v = "%d.%d.%d" % (info.major, info.minor, info.micro)
    return v if info.releaselevel == "final" else v + info.releaselevel[0] + str(info.serial)
env = {
    "implementation_name": sys.implementation.name,
    "implementation_version": full(sys.implementation.version),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
dists = []
for d in distributions():
    m = d.metadata
    dists.append({"name": m["Name"], "version": m["Version"], "requires": d.requires or [],
                  "summary": m["Summary"], "license": m["License-Expression"] or m["License"]})
print(json.dumps({"env": env, "dists": dists}))
"""


@dataclass(frozen=True)
class InstalledDistribution:
    """What an installed package's metadata says (``.dist-info``), read by its own interpreter."""

    name: str
    version: str
    dependencies: dict[str, str]
    summary: str | None
    license: str | None


def installed_distributions(python: str) -> dict[str, InstalledDistribution]:
    """Metadata of every distribution importable by ``python``, keyed by canonical name.

    The interpreter reads its own metadata (stdlib only, so it works for any Python); markers
    of ``Requires-Dist`` are evaluated here for that interpreter's environment, without extras.
    """
    proc = subprocess.run(metadata_command(python), capture_output=True, text=True, check=False)
    return parse_installed(proc.returncode, proc.stdout, proc.stderr)


def metadata_command(python: str) -> list[str]:
    """How ``python`` prints its installed metadata (with ``--when-told``: once a line comes
    on its stdin, so that it can be started, and import, while the install still runs)."""
    return [python, "-I", "-c", _METADATA_SCRIPT]


def parse_installed(code: int, stdout: str, stderr: str) -> dict[str, InstalledDistribution]:
    """The outcome of :func:`metadata_command`, keyed by canonical name."""
    if code != 0:
        raise BuildFailure(
            "install_failed", f"cannot read installed metadata: {stderr.strip()[-500:]}"
        )
    data = json.loads(stdout)
    env: dict[str, str] = {**data["env"], "extra": ""}
    result: dict[str, InstalledDistribution] = {}
    for dist in data["dists"]:
        if not dist.get("name"):
            continue
        license_text = dist.get("license")
        result[canonicalize_name(dist["name"])] = InstalledDistribution(
            name=dist["name"],
            version=dist["version"],
            dependencies=_dependencies(dist["requires"], env),
            summary=dist.get("summary"),
            license=license_text if license_text and len(license_text) <= _MAX_LICENSE else None,
        )
    return result


def _dependencies(requires: list[str], env: dict[str, str]) -> dict[str, str]:
    deps: dict[str, str] = {}
    for line in requires:
        try:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
        except (InvalidRequirement, InvalidMarker, UndefinedEnvironmentName):
            continue
        deps[canonicalize_name(req.name)] = str(req.specifier) or "*"
    return deps


def with_dependencies(
    packages: list[LockedPackage], installed: Mapping[str, InstalledDistribution]
) -> list[LockedPackage]:
    """``packages`` with ``dependencies`` filled from installed metadata, limited to the set."""
    names = {canonicalize_name(p.name) for p in packages}
    out: list[LockedPackage] = []
    for package in packages:
        dist = installed.get(canonicalize_name(package.name))
        if dist is None or package.dependencies:
            out.append(package)
            continue
        deps = {name: spec for name, spec in dist.dependencies.items() if name in names}
        out.append(replace(package, dependencies=deps))
    return out


def prefix_size(path: str | Path) -> int:
    """Bytes on disk under ``path``: ``st_blocks * 512``, each hardlinked inode counted once.

    Blocks rather than ``st_size`` because that is what the disk pays (sparse files, small
    files rounding up); symlinks are not followed, so the base interpreter is not counted.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [Path(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += info.st_blocks * 512
            if stat.S_ISDIR(info.st_mode):
                stack.append(Path(entry.path))
    return total


class InstalledReader:
    """``with InstalledReader(python) as reader: <install>; installed = reader.read()``."""

    def __init__(self, python: str) -> None:
        self.process = subprocess.Popen(
            [*metadata_command(python), "--when-told"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict[str, InstalledDistribution]:
        """The installed distributions, read now."""
        stdout, stderr = self.process.communicate("go\n")
        return parse_installed(self.process.returncode, stdout, stderr)

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
