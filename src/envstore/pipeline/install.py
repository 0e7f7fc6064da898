"""Stage 2 (install) of a PyPI build: a fresh venv at the prefix, then exactly the lock in it.

The prefix is created here and nowhere else; when anything fails the runner removes it. After
``uv pip sync`` the environment's own interpreter reports what is installed, which both checks
that the lock arrived whole and gives dependencies, summaries and licenses for the records.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envstore.backends import pypi
from envstore.backends.installed import InstalledDistribution, InstalledReader, prefix_size
from envstore.errors import BuildFailure
from envstore.pipeline.contract import BuildRequest
from envstore.pipeline.solve import SolvedEnvironment

__all__ = ["install_pypi"]


def install_pypi(
    solved: SolvedEnvironment, request: BuildRequest, log: pypi.Log
) -> tuple[dict[str, InstalledDistribution], int]:
    """Create ``request.prefix`` and install ``solved.packages``; return the installed
    metadata and the prefix's size on disk."""
    python = pypi.create_venv(
        request.prefix, solved.python, log=log, cache_dir=request.uv_cache_dir
    )
    # The interpreter that lists what was installed starts (and imports) during the install.
    with InstalledReader(python) as reader:
        if solved.packages:
            pypi.install(
                solved.packages,
                python,
                cache_dir=request.uv_cache_dir,
                log=log,
                work_dir=request.work_dir,
                index_url=request.pypi_index_url,
            )
        # Measured while the interpreter reads: walking ~10,000 files and the interpreter's
        # reading both wait on the OS, and the build waits for neither.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefix-size") as pool:
            size = pool.submit(prefix_size, request.prefix)
            installed = reader.read()
    _check_installed(solved, installed)
    return installed, size.result()


def _check_installed(
    solved: SolvedEnvironment, installed: dict[str, InstalledDistribution]
) -> None:
    """Every locked package must be installed at its locked version, or the build is not it."""
    wrong = []
    for package in solved.packages:
        dist = installed.get(canonicalize_name(package.name))
        if dist is None or not _same_version(dist.version, package.version):
            found = dist.version if dist else "missing"
            wrong.append(f"{package.name} {package.version} (installed: {found})")
    if wrong:
        raise BuildFailure(
            "install_failed", "installed set differs from the lock: " + ", ".join(wrong)
        )


def _same_version(left: str, right: str) -> bool:
    try:
        return Version(left) == Version(right)
    except InvalidVersion:
        return left == right
