"""Local ``file://`` conda channels built from generated packages, for tests and benchmarks.

conda-forge is not reachable from the machines that run our tests, yet the conda backend must be
exercised for real (solve, download, verify, link). :class:`ChannelBuilder` writes genuine
``.conda`` / ``.tar.bz2`` archives (``info/index.json`` with a realistic ``timestamp``,
``info/paths.json`` with per-file hashes) and indexes them with ``rattler.index``, so the backend
reads them exactly like a remote channel. :func:`large_channel` writes only a ``repodata.json``
(no archives) for the solve benchmark, and :func:`add_malicious_corpus` writes the hostile
archives of RELIABILITY.md I7.
"""

from __future__ import annotations

import asyncio
import bz2
import hashlib
import io
import json
import platform as host_platform
import random
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import zstandard

__all__ = [
    "MALICIOUS_KINDS",
    "ChannelBuilder",
    "Member",
    "add_malicious_corpus",
    "demo_channel",
    "host_subdir",
    "large_channel",
]

DEMO_OLD = datetime(2023, 1, 1, tzinfo=UTC)
DEMO_NEW = datetime(2024, 6, 1, tzinfo=UTC)

ArchiveFormat = Literal[".conda", ".tar.bz2"]
MALICIOUS_KINDS = ("dotdot", "absolute", "symlink", "hardlink", "device", "huge")
_HUGE_BYTES = 256 * 1024 * 1024


def host_subdir() -> str:
    """The conda subdir of this machine (``linux-64``), as rattler names it."""
    import rattler

    return str(rattler.Subdir.current())


@dataclass(frozen=True)
class Member:
    """One raw tar member; ``kind`` other than ``file`` lets tests write hostile entries."""

    path: str
    data: bytes = b""
    kind: Literal["file", "symlink", "hardlink", "chardev"] = "file"
    target: str = ""
    mode: int = 0o644
    declared_size: int | None = None  # only for huge members streamed as zeros


@dataclass
class _Package:
    name: str
    version: str
    build: str
    subdir: str
    index: dict[str, object]
    about: Mapping[str, object]
    members: list[Member] = field(default_factory=list)


class ChannelBuilder:
    """Write packages into ``root/<subdir>/`` and index the channel.

    Every archive is deterministic for the same arguments (fixed mtimes, sorted members), so a
    channel rebuilt in another test run has the same sha256 per package.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "noarch").mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The channel URL to put in a specification (``file:///...``)."""
        return self.root.resolve().as_uri()

    def add(
        self,
        name: str,
        version: str,
        build: str = "0",
        *,
        deps: Sequence[str] = (),
        files: Mapping[str, bytes] | None = None,
        timestamp: datetime | None = None,
        noarch: Literal["generic"] | None = "generic",
        subdir: str = "noarch",
        entry_points: Mapping[str, str] | None = None,
        fmt: ArchiveFormat = ".conda",
        license: str | None = "BSD-3-Clause",
        summary: str | None = None,
        extra_members: Sequence[Member] = (),
    ) -> Path:
        """Write one package archive and return its path.

        ``entry_points`` maps a command name to a shell snippet; each becomes an executable
        ``bin/<name>`` script, like the console scripts real packages ship.
        """
        when = timestamp or datetime(2024, 1, 1, tzinfo=UTC)
        members = [Member(path, data) for path, data in sorted((files or {}).items())]
        for command, body in sorted((entry_points or {}).items()):
            members.append(Member(f"bin/{command}", f"#!/bin/sh\n{body}\n".encode(), mode=0o755))
        members.extend(extra_members)
        index: dict[str, object] = {
            "name": name,
            "version": version,
            "build": build,
            "build_number": _build_number(build),
            "depends": list(deps),
            "license": license,
            "subdir": subdir,
            "timestamp": int(when.timestamp() * 1000),
        }
        if noarch:
            index["noarch"] = noarch
        if subdir != "noarch":
            index["platform"], _, arch = subdir.partition("-")
            index["arch"] = {"64": "x86_64", "aarch64": "aarch64", "arm64": "arm64"}.get(arch, arch)
        about = {"license": license, "summary": summary or f"{name}, a generated test package"}
        package = _Package(name, version, build, subdir, index, about, members)
        return self._write(package, fmt, int(when.timestamp()))

    def add_python_wrapper(
        self, version: str | None = None, *, build: str = "0", timestamp: datetime | None = None
    ) -> Path:
        """A ``python`` package for the host subdir that behaves like a venv of the host Python.

        ``bin/python`` is a *copy* of the host interpreter binary (a symlink would point outside
        the prefix, which the backend rightly refuses) and ``pyvenv.cfg`` names the host's
        ``bin`` as ``home``, so the interpreter finds its standard library there while
        ``sys.prefix`` is the conda prefix: ``uv pip install --python <prefix>/bin/python``
        installs into the prefix. Works when the host binary finds ``libpython`` through an
        absolute RUNPATH or links it statically (pyenv, python.org, distro builds).
        """
        when = timestamp or datetime(2024, 1, 1, tzinfo=UTC)
        real = Path(sys.executable).resolve()
        base = Path(sys.base_prefix)
        version = version or host_platform.python_version()
        major_minor = ".".join(version.split(".")[:2])
        binary = real.read_bytes()
        cfg = (
            f"home = {base / 'bin'}\ninclude-system-site-packages = false\nversion = {version}\n"
        ).encode()
        members = [Member("pyvenv.cfg", cfg)]
        for alias in ("python", "python3", f"python{major_minor}"):
            members.append(Member(f"bin/{alias}", binary, mode=0o755))
        members.append(Member(f"lib/python{major_minor}/site-packages/.keep", b""))
        subdir = host_subdir()
        index: dict[str, object] = {
            "name": "python",
            "version": version,
            "build": build,
            "build_number": _build_number(build),
            "depends": [],
            "license": "Python-2.0",
            "subdir": subdir,
            "timestamp": int(when.timestamp() * 1000),
        }
        about = {"license": "Python-2.0", "summary": "the host interpreter, wrapped as a venv"}
        package = _Package("python", version, build, subdir, index, about, members)
        return self._write(package, ".conda", int(when.timestamp()))

    def index(self) -> None:
        """Write ``repodata.json`` for every subdir with rattler's indexer (plain JSON only)."""
        from rattler.index import index_fs

        asyncio.run(index_fs(self.root, write_zst=False, write_shards=False, force=True))
        # The indexer stamps "indexed now", which as-of solves prefer; pretend each package was
        # uploaded when it was built, as on a real channel, so as-of tests mean something.
        for repodata_path in self.root.glob("*/repodata.json"):
            repodata = json.loads(repodata_path.read_text())
            for key in ("packages", "packages.conda"):
                for record in repodata.get(key, {}).values():
                    if "timestamp" in record:
                        record["indexed_timestamp"] = record["timestamp"]
            repodata_path.write_text(json.dumps(repodata, indent=1, sort_keys=True))

    def _write(self, package: _Package, fmt: ArchiveFormat, mtime: int) -> Path:
        target_dir = self.root / package.subdir
        target_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{package.name}-{package.version}-{package.build}"
        info = _info_members(package)
        path = target_dir / f"{stem}{fmt}"
        if fmt == ".tar.bz2":
            path.write_bytes(bz2.compress(_tar(info + package.members, mtime)))
        else:
            _write_conda(path, stem, _tar(info, mtime), _tar(package.members, mtime))
        return path


def _info_members(package: _Package) -> list[Member]:
    paths = []
    for member in package.members:
        entry: dict[str, object] = {"_path": member.path}
        if member.kind == "file" and member.declared_size is None:
            entry |= {
                "path_type": "hardlink",
                "sha256": hashlib.sha256(member.data).hexdigest(),
                "size_in_bytes": len(member.data),
            }
        elif member.kind == "file":
            entry |= {"path_type": "hardlink", "size_in_bytes": member.declared_size}
        else:
            entry |= {"path_type": "softlink" if member.kind == "symlink" else "hardlink"}
        paths.append(entry)
    paths_json = {"paths": paths, "paths_version": 1}
    files = "".join(f"{m.path}\n" for m in package.members)
    return [
        Member("info/index.json", _json(package.index)),
        Member("info/about.json", _json(package.about)),
        Member("info/paths.json", _json(paths_json)),
        Member("info/files", files.encode()),
    ]


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()


def _tar(members: Sequence[Member], mtime: int) -> bytes:
    """An uncompressed tar stream; hostile kinds are written exactly as requested."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.path)
            info.mtime, info.mode, info.uid, info.gid = mtime, member.mode, 0, 0
            if member.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, member.target
                tar.addfile(info)
            elif member.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, member.target
                tar.addfile(info)
            elif member.kind == "chardev":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
                tar.addfile(info)
            elif member.declared_size is not None:
                info.size = member.declared_size
                tar.addfile(info, _Zeros(member.declared_size))
            else:
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
    return buffer.getvalue()


class _Zeros(io.RawIOBase):
    """A readable of ``size`` zero bytes, so a huge member never sits in memory."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        count = self._left if size < 0 else min(size, self._left)
        self._left -= count
        return bytes(count)


def _write_conda(path: Path, stem: str, info_tar: bytes, pkg_tar: bytes) -> None:
    compressor = zstandard.ZstdCompressor(level=3)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(_zip_info("metadata.json"), b'{"conda_pkg_format_version": 2}')
        archive.writestr(_zip_info(f"pkg-{stem}.tar.zst"), compressor.compress(pkg_tar))
        archive.writestr(_zip_info(f"info-{stem}.tar.zst"), compressor.compress(info_tar))


def _zip_info(name: str) -> zipfile.ZipInfo:
    return zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))


def _build_number(build: str) -> int:
    tail = build.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def add_malicious_corpus(builder: ChannelBuilder, fmt: ArchiveFormat = ".conda") -> dict[str, str]:
    """Add one hostile package per kind of I7; returns ``{kind: package name}``.

    Each package is otherwise valid (index.json, paths.json) so that only the hostile member
    can be the reason it is refused.
    """
    hostile = {
        "dotdot": Member("../escaped-dotdot.txt", b"pwned\n"),
        "absolute": Member("/tmp/envstore-escaped-absolute.txt", b"pwned\n"),  # noqa: S108
        "symlink": Member("share/escape", kind="symlink", target="../../../../../../../../tmp"),
        "hardlink": Member("share/passwd", kind="hardlink", target="/etc/passwd"),
        "device": Member("share/null", kind="chardev"),
        "huge": Member("share/zeros.bin", declared_size=_HUGE_BYTES),
    }
    names = {}
    for kind, member in hostile.items():
        name = f"evil-{kind}"
        members = [member]
        if kind == "symlink":
            members.append(Member("share/escape/escaped-through-link.txt", b"pwned\n"))
        # The huge member only makes sense compressed with zstd; bz2 would take seconds to write.
        builder.add(name, "1.0", extra_members=members, fmt=".conda" if kind == "huge" else fmt)
        names[kind] = name
    return names


def large_channel(root: Path, n_records: int = 50_000, seed: int = 0) -> str:
    """Write a ``noarch/repodata.json`` with ``n_records`` records and return the channel URL.

    Names come in families with many versions and builds, and each record depends on 0-6 other
    names with version ranges, which is roughly the fan-out of conda-forge's Python ecosystem.
    No archives exist: the channel is for solving only.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
    n_names = max(1, n_records // 25)
    names = [f"pkg{i:05d}" for i in range(n_names)]
    packages: dict[str, dict[str, object]] = {}
    base = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
    for count in range(n_records):
        index = count % n_names
        name = names[index]
        serial = count // n_names
        major, minor = divmod(serial, 5)
        version = f"{major}.{minor}.{rng.randint(0, 3)}"
        deps = []
        # Depend on names with a larger index only, so the graph is acyclic like real channels.
        for other in rng.sample(
            range(index + 1, n_names), k=min(rng.randint(0, 6), n_names - index - 1)
        ):
            deps.append(f"{names[other]} >={rng.randint(0, 3)}.0")
        build = f"h{count:08x}_{serial}"
        packages[f"{name}-{version}-{build}.tar.bz2"] = {
            "build": build,
            "build_number": serial,
            "depends": sorted(deps),
            "license": "MIT",
            "md5": hashlib.md5(build.encode(), usedforsecurity=False).hexdigest(),
            "name": name,
            "sha256": hashlib.sha256(build.encode()).hexdigest(),
            "size": 1000 + rng.randint(0, 100_000),
            "subdir": "noarch",
            "timestamp": base + count * 60_000,
            "version": version,
        }
    subdir = root / "noarch"
    if subdir.exists():
        shutil.rmtree(subdir)
    subdir.mkdir(parents=True)
    repodata = {"info": {"subdir": "noarch"}, "packages": packages, "packages.conda": {}}
    (subdir / "repodata.json").write_text(json.dumps(repodata))
    return root.resolve().as_uri()


def demo_channel(root: Path) -> ChannelBuilder:
    """The small indexed channel the server tests, acceptance tests and benchmarks share.

    ``liba`` 1.0 (published 2023-01-01) and 2.0 (2024-06-01, as ``.tar.bz2``); ``app`` (needs
    ``liba >=1``, ships ``bin/app``); ``needs-old`` and ``needs-new``, which conflict;
    ``glibc-hungry`` (needs ``__glibc >=99``); and a ``python`` wrapping the host interpreter.
    """
    builder = ChannelBuilder(root)
    builder.add("liba", "1.0", files={"share/liba/version.txt": b"1.0\n"}, timestamp=DEMO_OLD)
    builder.add(
        "liba",
        "2.0",
        files={"share/liba/version.txt": b"2.0\n"},
        timestamp=DEMO_NEW,
        fmt=".tar.bz2",
    )
    builder.add(
        "app",
        "1.0",
        deps=["liba >=1"],
        entry_points={
            "app": 'echo "hello from app, liba $(cat "$(dirname "$0")/../share/liba/version.txt")"'
        },
        timestamp=DEMO_OLD,
        summary="the demo app",
    )
    builder.add("needs-old", "1.0", deps=["liba <2"], timestamp=DEMO_OLD)
    builder.add("needs-new", "1.0", deps=["liba >=2"], timestamp=DEMO_OLD)
    builder.add("glibc-hungry", "1.0", deps=["__glibc >=99"], timestamp=DEMO_OLD)
    builder.add_python_wrapper(timestamp=datetime(2022, 1, 1, tzinfo=UTC))
    builder.index()
    return builder
