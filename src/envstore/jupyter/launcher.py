"""``envstore kernel NS/NAME[@REF] -f CONNECTION_FILE``: what a kernelspec's ``argv`` runs.

The reference is resolved when the kernel starts (``GET /api/v1/resolve/...``), so an unpinned
kernel always starts the environment's current build and a pinned one (``@BUILD_KEY``) always
the same build. The build starts from its prefix when this host sees it (the server's path, or
``ENVSTORE_KERNEL_STORE_DIR`` where the store is mounted here), else from the relocatable
archive unpacked in the kernel cache (:mod:`envstore.jupyter.archive_cache`). The launcher then
``exec``s the build's own ``python -m ipykernel_launcher``, so the kernel's ``sys.prefix`` is the
build's and Jupyter's signals (interrupt, shutdown) reach the kernel itself.

When the server cannot be reached, the build the last sync saw (``ENVSTORE_KERNEL_LAST_*`` in
the kernelspec's ``env``) still starts if its prefix or cached copy is here, with one warning.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from envstore.cli.client import EnvstoreClient, ServerError
from envstore.cli.common import parse_selector_ref
from envstore.cli.run import activated_environ
from envstore.core.builds import BuildStatus
from envstore.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from envstore.jupyter.archive_cache import cache_dir, cached_prefix, unpacked_build

__all__ = ["kernel_prefix", "launch_kernel", "reachable_prefix"]

_DEFAULT_ARCHIVE_WAIT = 300.0
_LAUNCHER_VARIABLES = ("ENVSTORE_KERNEL_LAST_BUILD", "ENVSTORE_KERNEL_LAST_PREFIX")


def _warn(message: str) -> None:
    sys.stderr.write(f"envstore: {message}\n")
    sys.stderr.flush()


def _usable(prefix: Path) -> bool:
    return (prefix / "bin" / "python").exists()


def reachable_prefix(build: Mapping[str, Any], environ: Mapping[str, str]) -> Path | None:
    """The build's prefix on this host's filesystem, or None (then the archive is used)."""
    if environ.get("ENVSTORE_KERNEL_SOURCE", "auto") == "archive":
        return None
    mount = environ.get("ENVSTORE_KERNEL_STORE_DIR")
    environment = build.get("environment") or {}
    if mount and environment.get("namespace") and build.get("build_key"):
        candidate = Path(mount) / "envs" / str(environment["namespace"]) / str(build["build_key"])
    elif build.get("prefix"):
        candidate = Path(str(build["prefix"]))
    else:
        return None
    return candidate if _usable(candidate) else None


def _archive_wait(environ: Mapping[str, str]) -> float:
    raw = environ.get("ENVSTORE_KERNEL_ARCHIVE_WAIT", "")
    try:
        return max(0.0, float(raw)) if raw else _DEFAULT_ARCHIVE_WAIT
    except ValueError:
        raise InvalidInput(f"ENVSTORE_KERNEL_ARCHIVE_WAIT={raw!r} is not a number") from None


def _offline_prefix(
    reference: str, selector: str, environ: Mapping[str, str], reason: str
) -> Path | None:
    """The last synced build's prefix or cached copy, if the reference may start it."""
    last = environ.get("ENVSTORE_KERNEL_LAST_BUILD", "")
    if not last or selector not in ("", last):
        return None
    candidates = [Path(environ.get("ENVSTORE_KERNEL_LAST_PREFIX") or "/nonexistent")]
    if environ.get("ENVSTORE_KERNEL_SOURCE", "auto") == "archive":
        candidates = []
    cached = cached_prefix(cache_dir(environ), last)
    candidates += [cached] if cached is not None else []
    for candidate in candidates:
        if _usable(candidate):
            _warn(f"{reason}; starting {reference} from the last synced build {last}")
            return candidate
    return None


def kernel_prefix(
    client: EnvstoreClient, reference: str, environ: Mapping[str, str]
) -> tuple[Path, dict[str, Any]]:
    """Resolve ``reference`` and return the prefix to start the kernel from, and the build."""
    env_ref, selector = parse_selector_ref(reference)
    try:
        build = client.resolve(env_ref.namespace, env_ref.name, selector)
    except (Unavailable, ServerError) as exc:
        prefix = _offline_prefix(reference, selector, environ, exc.message)
        if prefix is None:
            raise
        return prefix, {}
    except NotFound as exc:
        raise NotFound(
            f"{reference}: {exc.message}. The build was deleted or garbage-collected, or the "
            "environment is gone; run 'envstore kernels sync' to refresh the kernel list"
        ) from None
    except Forbidden:
        raise Forbidden(
            f"{reference}: your envstore token may not read this environment "
            "(ENVSTORE_TOKEN or 'envstore login')"
        ) from None
    if build.get("status") != BuildStatus.COMPLETED or not build.get("build_key"):
        raise Conflict(
            f"{reference}: build {build.get('id')} is {build.get('status')}; "
            "only a COMPLETED build can run a kernel"
        )
    prefix = reachable_prefix(build, environ)
    if prefix is None:
        prefix = unpacked_build(
            client, build, cache_dir(environ), wait=_archive_wait(environ), log=_warn
        )
    return prefix, build


def launch_kernel(
    client: EnvstoreClient, reference: str, connection_file: str, environ: Mapping[str, str]
) -> NoReturn:
    """Replace this process with the build's ipykernel on ``connection_file``."""
    with client:
        prefix, build = kernel_prefix(client, reference, environ)
    python = prefix / "bin" / "python"
    base = {k: v for k, v in environ.items() if k not in _LAUNCHER_VARIABLES}
    kernel_environ = activated_environ(prefix, build, base)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", connection_file]
    try:
        os.execve(python, argv, kernel_environ)  # noqa: S606 (argv is ours, no shell)
    except OSError as exc:
        raise InvalidInput(f"cannot start {python}: {exc.strerror}") from None
