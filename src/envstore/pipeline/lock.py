"""Stage 3 (lock) of a PyPI build: the lockfile, the pinned ``environment.yaml`` and the result.

Runs after install, because the dependency edges of each locked package come from the installed
metadata (``uv pip compile``'s ``pylock.toml`` does not carry them). A submitted lockfile keeps
its own edges, so building from a lockfile gives back the same lockfile.
"""

from __future__ import annotations

from typing import Any

from packaging.utils import canonicalize_name

from envstore.backends.installed import InstalledDistribution, with_dependencies
from envstore.core.lockfile import Lockfile
from envstore.core.specs import EnvironmentSpec
from envstore.core.yamlsafe import dump_yaml
from envstore.pipeline.contract import BuildRequest, BuildResult, PackageInfo
from envstore.pipeline.solve import SolvedEnvironment

__all__ = ["lock_pypi", "pinned_yaml"]


def lock_pypi(
    solved: SolvedEnvironment,
    installed: dict[str, InstalledDistribution],
    spec: EnvironmentSpec,
    request: BuildRequest,
    size: int,
) -> BuildResult:
    """The :class:`BuildResult` of a finished PyPI build (``size``: its prefix on disk)."""
    packages = list(solved.packages)
    if not solved.from_lockfile:
        packages = with_dependencies(packages, installed)
    lock = Lockfile(
        platform=solved.platform,
        packages=tuple(packages),
        python_version=solved.python_version,
        as_of=request.as_of,
    )
    infos = []
    for package in lock.sorted_packages():
        dist = installed.get(canonicalize_name(package.name))
        infos.append(
            PackageInfo(
                name=package.name,
                version=package.version,
                manager="pip",
                channel=solved.index_url,
                url=package.url,
                sha256=package.sha256,
                requested=package.requested,
                summary=dist.summary if dist else None,
                license=dist.license if dist else None,
            )
        )
    return BuildResult(
        lockfile=lock.to_yaml(),
        pinned_yaml=pinned_yaml(spec, lock),
        packages=infos,
        size=size,
        python_version=solved.python_version,
    )


def pinned_yaml(spec: EnvironmentSpec, lock: Lockfile) -> str:
    """An ``environment.yaml`` pinning the interpreter and every pip package of ``lock``."""
    deps: list[Any] = []
    if lock.python_version:
        deps.append(f"python={lock.python_version}")
    pip = [f"{p.name}=={p.version}" for p in lock.sorted_packages() if p.manager == "pip"]
    if pip:
        deps.append({"pip": pip})
    data: dict[str, Any] = {
        "name": spec.name,
        "channels": list(spec.channels),
        "dependencies": deps,
    }
    if spec.variables:
        data["variables"] = dict(sorted(spec.variables.items()))
    return dump_yaml(data)
