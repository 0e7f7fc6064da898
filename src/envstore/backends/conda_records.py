"""Turning rattler records into envstore's lockfile entries and package records.

Split from :mod:`envstore.backends.conda` so the conversion rules (what goes into a lockfile
entry, where a record's summary comes from) sit in one place and stay deterministic: the same
records always give the same entries, which is what makes an exported lockfile byte-identical
across installs of the same lock (RELIABILITY.md M4). Also holds the ``pip:`` install step,
which must not use ``uv pip sync``: sync removes every distribution it was not given,
including the Python packages conda just installed into the prefix.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import rattler

from envstore.backends.channels import channel_for_url
from envstore.core.lockfile import LockedPackage
from envstore.errors import BuildFailure
from envstore.pipeline.contract import BuildRequest, PackageInfo

__all__ = ["dependencies", "locked", "metadata_size", "package_info", "pip_info", "pip_install"]

Log = Callable[[str], None]
_DEP = re.compile(r"^\s*([^\s=<>!~]+)\s*(.*?)\s*$")


def dependencies(depends: Sequence[str]) -> dict[str, str]:
    """conda-lock's ``dependencies`` mapping: name → version constraint (``*`` for any)."""
    out: dict[str, str] = {}
    for dep in depends:
        match = _DEP.match(dep)
        if not match:
            continue
        name, constraint = match.group(1), match.group(2) or "*"
        out[name] = f"{out[name]},{constraint}" if name in out else constraint
    return out


def locked(
    record: rattler.RepoDataRecord, platform: str, requested: frozenset[str]
) -> LockedPackage:
    """The lockfile entry of one conda record."""
    name = record.name.normalized
    return LockedPackage(
        name=name,
        version=str(record.version),
        manager="conda",
        platform=platform,
        url=record.url,
        sha256=record.sha256.hex() if record.sha256 else "",
        md5=record.md5.hex() if record.md5 else None,
        build=str(record.build),
        dependencies=dependencies(record.depends),
        requested=name in requested,
    )


def package_info(
    record: rattler.RepoDataRecord,
    channels: Sequence[str],
    requested: frozenset[str],
    pkgs_dir: str,
) -> PackageInfo:
    """The database record of one installed conda package."""
    name = record.name.normalized
    return PackageInfo(
        name=name,
        version=str(record.version),
        manager="conda",
        channel=channel_for_url(record.url, channels) or str(record.channel or ""),
        url=record.url,
        sha256=record.sha256.hex() if record.sha256 else "",
        requested=name in requested,
        build=str(record.build),
        md5=record.md5.hex() if record.md5 else None,
        license=record.license,
        summary=_summary(Path(pkgs_dir) / f"{name}-{record.version}-{record.build}"),
        size=record.size,
    )


def _summary(extracted: Path) -> str | None:
    """``info/about.json``'s summary from the package cache; repodata does not carry it."""
    try:
        about = json.loads((extracted / "info" / "about.json").read_text())
    except (OSError, ValueError):
        return None
    summary = about.get("summary") if isinstance(about, dict) else None
    return str(summary) if summary else None


def pip_info(package: LockedPackage, index_url: str | None) -> PackageInfo:
    """The database record of one package installed by the ``pip:`` section."""
    return PackageInfo(
        name=package.name,
        version=package.version,
        manager="pip",
        channel=index_url or "https://pypi.org/simple",
        url=package.url,
        sha256=package.sha256,
        requested=package.requested,
    )


def pip_install(
    packages: Sequence[LockedPackage], python: str | None, request: BuildRequest, log: Log
) -> None:
    """Install exactly ``packages`` (hash-checked, no dependency resolution) into the prefix."""
    from envstore.backends import pypi

    if python is None:
        raise BuildFailure(
            "interpreter_not_found", "the pip: packages need 'python' among the conda packages"
        )
    lines = sorted(f"{p.name} @ {p.url} --hash=sha256:{p.sha256}\n" for p in packages)
    requirements = Path(request.work_dir) / "conda-pip-requirements.txt"
    requirements.write_text("".join(lines))
    cmd = [pypi.uv_bin(), "pip", "install", "-r", str(requirements), "--python", python]
    cmd += ["--no-deps", "--require-hashes", "--no-config", "--color", "never"]
    cmd += ["--cache-dir", request.uv_cache_dir, "--link-mode", "copy"]
    if request.pypi_index_url:
        cmd += ["--index-url", request.pypi_index_url]
    log(f"installing {len(lines)} pip packages into the conda prefix")
    try:
        code, tail = pypi.stream_command(
            cmd, log, timeout=request.solve_timeout, cwd=request.work_dir
        )
    except TimeoutError as exc:
        raise BuildFailure("timeout", str(exc), retryable=True) from None
    if code != 0:
        raise pypi.classify_uv_failure(tail, default_reason="install_failed")


def metadata_size(prefix: Path) -> int:
    """Bytes in ``prefix`` beyond the conda packages' own files: ``conda-meta`` and what pip
    installed (the sizes of each distribution's ``RECORD``, and the ``RECORD`` itself)."""
    total = 0
    meta = prefix / "conda-meta"
    if meta.is_dir():
        with os.scandir(meta) as entries:
            total += sum(e.stat().st_size for e in entries if e.is_file(follow_symlinks=False))
    for listing in prefix.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        text = listing.read_text(errors="replace")
        total += len(text)
        for row in csv.reader(io.StringIO(text)):
            if len(row) == 3 and row[2].isdigit():
                total += int(row[2])
    return total
