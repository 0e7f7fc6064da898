"""Builds unpacked from their relocatable archive, for hosts that cannot see the store.

``<cache>/<build key>/`` holds one build: downloaded through the API once, its sha256 checked
against the digest the server recorded for the CONDA_PACK artifact, unpacked, moved into place
by its own ``bin/conda-unpack``, then marked ready. A lock file per build key makes concurrent
launches wait for the one that unpacks; a half-unpacked directory (crash, full disk) is never
marked ready and is unpacked again. The cache path should be shorter than the server's store
path: binary files can only be relocated to a prefix that is not longer (docs/jupyter.md).

The archive may be written a moment after the build COMPLETED: until it exists the launcher
polls for at most ``wait`` seconds, then says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from envstore.cli.client import EnvstoreClient
from envstore.errors import InvalidInput, NotFound, Unavailable

__all__ = ["READY_MARK", "cache_dir", "cached_prefix", "unpacked_build"]

READY_MARK = ".envstore-ready"
_POLL_SECONDS = 2.0


def cache_dir(environ: Mapping[str, str]) -> Path:
    """``ENVSTORE_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/envstore/k`` (kept short on purpose)."""
    configured = environ.get("ENVSTORE_KERNEL_CACHE")
    if configured:
        return Path(configured)
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "envstore" / "k"


def cached_prefix(cache: Path, build_key: str) -> Path | None:
    """The unpacked build if a launch finished unpacking it before."""
    prefix = cache / build_key
    return prefix if (prefix / READY_MARK).is_file() else None


@contextlib.contextmanager
def _locked(cache: Path, build_key: str) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".{build_key}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Tee:
    """Writes downloaded chunks to the file and the hash."""

    def __init__(self, sha256: hashlib._Hash, sink: BinaryIO) -> None:
        self.sha256 = sha256
        self.sink = sink

    def write(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.sink.write(chunk)


def _archive_digest(client: EnvstoreClient, build: Mapping[str, Any], wait: float) -> str:
    """The CONDA_PACK digest of the build, waiting up to ``wait`` s for the archive to exist."""
    deadline = time.monotonic() + wait
    current = build
    while True:
        for artifact in current.get("build_artifacts") or ():
            if artifact.get("artifact_type") == "CONDA_PACK" and artifact.get("key"):
                return str(artifact["key"])
        if time.monotonic() >= deadline:
            raise Unavailable(
                f"build {build['id']} has no relocatable archive yet (waited {wait:.0f} s); "
                "it is needed because the build's prefix is not on this host"
            )
        time.sleep(_POLL_SECONDS)
        current = client.get_build(int(build["id"]))


def _download(
    client: EnvstoreClient, build_id: int, digest: str, target: Path, wait: float
) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            sha256 = hashlib.sha256()
            with target.open("wb") as sink:
                client.download_archive(build_id, _Tee(sha256, sink).write)
            break
        except NotFound:
            # The archive route answers 404 until the archive exists (it may trail COMPLETED).
            if time.monotonic() >= deadline:
                raise
            time.sleep(_POLL_SECONDS)
    if sha256.hexdigest() != digest:
        target.unlink(missing_ok=True)
        raise InvalidInput(
            f"the archive of build {build_id} does not match its recorded digest; "
            "it was not unpacked"
        )


def _unpack(archive: Path, prefix: Path) -> None:
    if prefix.exists():
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True)
    with tarfile.open(archive, "r:gz") as tar:
        # "tar": no member outside the prefix; absolute symlinks stay (a venv's interpreter).
        tar.extractall(prefix, filter="tar")
    unpack = prefix / "bin" / "conda-unpack"
    result = subprocess.run([str(unpack)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InvalidInput(
            f"bin/conda-unpack failed in {prefix}: {result.stderr.strip()[-300:]} "
            "(set ENVSTORE_KERNEL_CACHE to a shorter path if it says 'longer prefix')"
        )


def unpacked_build(
    client: EnvstoreClient,
    build: Mapping[str, Any],
    cache: Path,
    *,
    wait: float,
    log: Callable[[str], None],
) -> Path:
    """The build unpacked in the cache: from an earlier launch, or downloaded now."""
    build_key = str(build["build_key"])
    with _locked(cache, build_key):
        ready = cached_prefix(cache, build_key)
        if ready is not None:
            return ready
        digest = _archive_digest(client, build, wait)
        archive = cache / f".{build_key}.tar.gz"
        log(f"downloading build {build['id']} ({build_key}) into {cache}")
        try:
            _download(client, int(build["id"]), digest, archive, wait)
            prefix = cache / build_key
            _unpack(archive, prefix)
        finally:
            archive.unlink(missing_ok=True)
        (prefix / READY_MARK).write_text(digest + "\n")
        return prefix
