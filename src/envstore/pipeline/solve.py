"""Stage 1 (solve) of a PyPI build: pick the interpreter and pin every package.

Either uv resolves the spec's ``pip`` requirements, or, when the user submitted a lockfile, the
lockfile is taken as the solution as it stands (a build from a lockfile never solves again).
The outcome, :class:`SolvedEnvironment`, is all that the install and lock stages need.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from envstore.backends import interpreters, pypi
from envstore.core.lockfile import LockedPackage, Lockfile
from envstore.core.policy import SolvedPackage
from envstore.core.specs import EnvironmentSpec
from envstore.errors import BuildFailure, InvalidSpec
from envstore.pipeline.contract import BuildRequest

__all__ = ["SolvedEnvironment", "solve_pypi", "solved_for_policy"]


@dataclass(frozen=True)
class SolvedEnvironment:
    """The pinned package set of one build and the interpreter it was solved for."""

    platform: str
    python: str  # path of the base interpreter on the build host
    python_version: str
    packages: tuple[LockedPackage, ...]
    index_url: str
    from_lockfile: bool = False


def solve_pypi(request: BuildRequest, spec: EnvironmentSpec, log: pypi.Log) -> SolvedEnvironment:
    """Solve ``spec`` (or adopt ``request.lockfile``) for the host's matching interpreter."""
    platform = pypi.host_platform()
    if request.platform and request.platform != platform:
        # Wheels are picked for the interpreter that installs them: no cross-platform builds.
        raise BuildFailure(
            "unsupported",
            f"PyPI environments are built for the build host's platform ({platform}), "
            f"not {request.platform}",
        )
    index_url = request.pypi_index_url or pypi.DEFAULT_INDEX_URL
    if request.lockfile is not None:
        return _from_lockfile(request, spec, platform, index_url, log)
    python, version = interpreters.find_interpreter(
        spec.python or request.default_python, log=log, cache_file=interpreter_cache(request)
    )
    packages: list[LockedPackage] = []
    if spec.pip:
        packages = pypi.resolve_for_request(
            request,
            list(spec.pip),
            python,
            requested=spec.requested_names,
            platform=platform,
            log=log,
            python_version=version,
        )
    log(f"solved {len(packages)} package(s) for Python {version} on {platform}")
    return SolvedEnvironment(platform, python, version, tuple(packages), index_url)


def interpreter_cache(request: BuildRequest) -> Path:
    """Where interpreter discovery answers are kept, beside the shared uv cache."""
    return Path(request.uv_cache_dir).parent / "interpreters.json"


def _from_lockfile(
    request: BuildRequest,
    spec: EnvironmentSpec,
    platform: str,
    index_url: str,
    log: pypi.Log,
) -> SolvedEnvironment:
    """The submitted lockfile as the solution, after checking that this backend can install it."""
    assert request.lockfile is not None
    try:
        lock = Lockfile.from_text(request.lockfile)
    except InvalidSpec as exc:
        raise BuildFailure("invalid_lockfile", exc.message) from None
    conda = sorted(p.name for p in lock.packages if p.manager != "pip")
    if conda:
        raise BuildFailure(
            "invalid_lockfile",
            "a PyPI environment's lockfile may only hold 'manager: pip' packages; "
            f"found conda package(s): {', '.join(conda)}",
        )
    if lock.platform != platform:
        raise BuildFailure(
            "invalid_lockfile",
            f"the lockfile is for {lock.platform}; this build host is {platform}",
        )
    request_python = lock.python_version or spec.python or request.default_python
    python, version = interpreters.find_interpreter(
        request_python, log=log, cache_file=interpreter_cache(request)
    )
    requested = spec.requested_names
    packages = tuple(
        replace(p, requested=canonicalize_name(p.name) in requested) for p in lock.packages
    )
    log(f"installing {len(packages)} package(s) from the submitted lockfile, no solve")
    return SolvedEnvironment(platform, python, version, packages, index_url, from_lockfile=True)


def solved_for_policy(solved: SolvedEnvironment) -> list[SolvedPackage]:
    """The solution as the policy sees it. A submitted lockfile says what requires what; uv's
    resolution does not (the policy gate asks uv only if a rule is broken)."""
    return [
        SolvedPackage(
            p.name,
            p.version,
            "pip",
            solved.index_url,
            tuple(p.dependencies) if solved.from_lockfile else None,
            p.requested,
        )
        for p in solved.packages
    ]
