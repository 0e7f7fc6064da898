"""Safety checks on conda package archives before rattler extracts or links them (I7).

rattler refuses some hostile archives on its own, but not all of them, and not all cleanly: an
absolute member path makes its linker panic and abort the whole process, a device node is
created in the prefix, and a symlink pointing out of the prefix is linked as is. So every
archive is read here first, header by header (data is only decompressed, never written), and
refused with a message naming the member. Nothing is extracted, so a refused archive leaves
no file anywhere.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from envstore.errors import BuildFailure

__all__ = ["ArchiveLimits", "check_archive", "file_sha256"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what one archive may expand to.

    ``max_ratio`` only applies above ``ratio_floor`` bytes, since tiny text-only packages
    legitimately compress very well.
    """

    max_unpacked_bytes: int = 8 * 1024**3
    max_ratio: int = 200
    ratio_floor: int = 64 * 1024**2


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large packages do not sit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_archive(path: Path, package: str, limits: ArchiveLimits | None = None) -> int:
    """Raise ``BuildFailure('unsafe_package')`` if extracting ``path`` could leave the prefix.

    ``package`` names the package in the message (``name-version-build``). Returns the bytes
    of the files the package installs (its members outside ``info/``).
    """
    limits = limits or ArchiveLimits()
    budget = _Budget(package, limits, path.stat().st_size)
    try:
        for tar in _tar_streams(path):
            _check_members(tar, package, budget)
        return budget.installed
    except BuildFailure:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, zstandard.ZstdError, EOFError, OSError) as exc:
        raise BuildFailure("unsafe_package", f"{package}: archive is corrupt: {exc}") from None


class _Budget:
    """Running total of declared member sizes across both tar streams of one archive."""

    def __init__(self, package: str, limits: ArchiveLimits, archive_size: int) -> None:
        self.package, self.limits, self.archive_size = package, limits, max(archive_size, 1)
        self.total = 0
        self.installed = 0  # what lands in a prefix: every member but the info/ metadata

    def add(self, member: str, size: int) -> None:
        self.total += size
        if not member.startswith("info/"):
            self.installed += size
        limits = self.limits
        if self.total > limits.max_unpacked_bytes:
            raise BuildFailure(
                "unsafe_package",
                f"{self.package}: member '{member}' makes the package expand to more than "
                f"{limits.max_unpacked_bytes} bytes",
            )
        ratio = self.total // self.archive_size
        if self.total > limits.ratio_floor and ratio > limits.max_ratio:
            raise BuildFailure(
                "unsafe_package",
                f"{self.package}: member '{member}' makes the package expand {ratio} times its "
                f"archive size (limit {limits.max_ratio})",
            )


def _tar_streams(path: Path) -> Iterator[tarfile.TarFile]:
    if path.name.endswith(".tar.bz2"):
        with tarfile.open(path, mode="r|bz2") as tar:
            yield tar
        return
    if not path.name.endswith(".conda"):
        raise BuildFailure("unsafe_package", f"{path.name}: unknown package format")
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith(".tar.zst"):
                continue
            with (
                archive.open(name) as raw,
                _zstd_reader(raw) as reader,
                tarfile.open(fileobj=reader, mode="r|") as tar,
            ):
                yield tar


def _zstd_reader(raw: IO[bytes]) -> zstandard.ZstdDecompressionReader:
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


def _check_members(tar: tarfile.TarFile, package: str, budget: _Budget) -> None:
    for member in tar:
        name = member.name
        if _escapes(name):
            raise BuildFailure("unsafe_package", f"{package}: member '{name}' escapes the prefix")
        if member.issym():
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            if member.linkname.startswith("/") or _escapes(target):
                raise BuildFailure(
                    "unsafe_package",
                    f"{package}: symlink '{name}' -> '{member.linkname}' points outside the prefix",
                )
        elif member.islnk():
            if _escapes(member.linkname):
                raise BuildFailure(
                    "unsafe_package",
                    f"{package}: hardlink '{name}' -> '{member.linkname}' "
                    "points outside the prefix",
                )
        elif member.ischr() or member.isblk() or member.isfifo():
            raise BuildFailure(
                "unsafe_package", f"{package}: member '{name}' is a device node or fifo"
            )
        elif not (member.isfile() or member.isdir()):
            raise BuildFailure(
                "unsafe_package", f"{package}: member '{name}' has an unsupported type"
            )
        budget.add(name, member.size)


def _escapes(name: str) -> bool:
    """True when ``name`` is absolute or climbs above its root once normalised."""
    if name.startswith("/") or "\x00" in name:
        return True
    normal = posixpath.normpath(name)
    return normal == ".." or normal.startswith("../")
