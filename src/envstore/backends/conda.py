"""The conda backend: fetch repodata, solve, verify archives and install with py-rattler.

Called by ``pipeline.runner`` for conda environments (``request.kind == "conda"``). The flow is
solve (or read a submitted lockfile) → fetch and verify every archive (sha256, and the I7
safety rules of :mod:`envstore.backends.conda_archives`) → ``rattler.install`` into the fresh
prefix with the shared package cache and no link scripts → the ``pip:`` section with uv into
the prefix's own ``python`` → lockfile, pinned YAML and package records. Archives are verified
*before* rattler sees them, so a refused package leaves nothing in the prefix or the cache.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import rattler
from rattler.exceptions import GatewayError, InstallerError, SolverError

from envstore.backends import conda_records
from envstore.backends.channels import (
    Credentials,
    channel_for_url,
    channel_url,
    channel_urls,
    make_client,
    redact,
)
from envstore.backends.conda_archives import ArchiveLimits, check_archive, file_sha256
from envstore.backends.conda_policy import (
    PolicyCheck,
    check_allowed,
    locked_for_policy,
    no_policy,
    record_for_policy,
    request_spec,
    unreachable,
)
from envstore.backends.conda_repodata import gateway_for
from envstore.backends.pypi import requirement_edges
from envstore.core.lockfile import LockedPackage, Lockfile
from envstore.core.policy import conda_constraints
from envstore.core.policy_settings import EffectivePolicy
from envstore.core.specs import EnvironmentSpec
from envstore.core.yamlsafe import dump_yaml
from envstore.errors import BuildFailure, InvalidSpec
from envstore.pipeline.contract import BuildRequest, BuildResult

__all__ = ["build", "host_platform", "solve_only", "virtual_overrides"]

Log = Callable[[str], None]


def host_platform() -> str:
    """The conda subdir of this machine, the default build platform."""
    return str(rattler.Subdir.current())


def build(request: BuildRequest, log: Log, gate: PolicyCheck = no_policy) -> BuildResult:
    """Create the conda environment of ``request`` in ``request.prefix``.

    ``gate`` sees the solution (or the submitted lockfile) before any archive is fetched or
    linked, and the ``pip:`` part before it is installed. Raises :class:`BuildFailure` with a
    stable ``reason`` (``channel_unreachable``, ``solve_failed``, ``solve_timeout``,
    ``policy_violation``, ``hash_mismatch``, ``unsafe_package``, ``install_failed``...); the
    caller owns cleanup of the half-built prefix.
    """
    platform = request.platform or host_platform()
    check_allowed(request)  # again in the worker: a rebuild of a spec older than the rule
    client = make_client(request.channel_credentials)
    as_of = request.as_of
    if request.lockfile:
        # A lockfile submission's spec is {name, lockfile}: what to install is the lock itself.
        lock = _read_lockfile(request.lockfile, platform)
        channels = list(lock.channels)
        spec = EnvironmentSpec(name=request.spec.get("name"), channels=lock.channels)
        requested, as_of = _roots(lock.packages), lock.as_of
        conda_locked = [p for p in lock.packages if p.manager == "conda"]
        pip_locked = [
            replace(p, requested=p.name in requested) for p in lock.packages if p.manager == "pip"
        ]
        gate([locked_for_policy(p, requested) for p in lock.packages], None)
        log(f"installing {len(conda_locked)} conda packages from the submitted lockfile")
        records, sizes = asyncio.run(
            _records_from_lock(conda_locked, channels, request, client, log)
        )
    else:
        spec = request_spec(request.spec)
        requested = spec.requested_names
        channels = channel_urls(spec.channels, request.channel_alias)
        records = solve_records(
            channels,
            solver_specs(spec.match_specs, request.channel_alias),
            platform,
            cache_dir=request.repodata_cache_dir,
            as_of=request.as_of,
            timeout=request.solve_timeout,
            virtual_packages=virtual_overrides(request, spec),
            log=log,
            client=client,
            constraints=conda_constraints(EffectivePolicy.from_json(request.policy)),
        )
        gate([record_for_policy(r, requested) for r in records], None)
        sizes = asyncio.run(_verify_records(records, request, client, log))
        pip_locked = []
    _install(records, request, platform, client, log)
    python = _prefix_python(Path(request.prefix))
    if spec.pip and not request.lockfile:
        pip_locked = _pip_resolve(spec, python, request, platform, log)
        assert python is not None  # _pip_resolve refuses a prefix without one
        gate(
            [record_for_policy(r, requested) for r in records]
            + [locked_for_policy(p, requested, request.pypi_index_url) for p in pip_locked],
            lambda: requirement_edges(request, list(spec.pip), python, log),
        )
    if pip_locked:
        _pip_install(pip_locked, python, request, log)
    return _result(records, pip_locked, sizes, channels, spec, requested, request, platform, as_of)


def virtual_overrides(request: BuildRequest, spec: EnvironmentSpec) -> dict[str, str | None]:
    """Virtual-package overrides: the server's settings, then the environment's own."""
    merged: dict[str, str | None] = dict(request.virtual_packages)
    merged.update(request.extra.get("virtual_packages") or {})
    merged.update(spec.virtual_packages)
    return merged


def solver_specs(specs: Sequence[str], channel_alias: str) -> list[str]:
    """``specs`` (normal forms from :mod:`envstore.core.matchspec`) with channel names as URLs.

    ``conda-forge::numpy`` must mean the channel under the server's alias, as the spec's
    ``channels:`` do, not rattler's built-in default.
    """
    out: list[str] = []
    for spec in specs:
        channel, sep, rest = spec.rpartition("::")
        # URLs and ``name/subdir`` forms are left to rattler; a bare name gets the alias.
        if sep and "/" not in channel:
            spec = f"{channel_url(channel, channel_alias)}::{rest}"
        out.append(spec)
    return out


def _roots(packages: Sequence[LockedPackage]) -> frozenset[str]:
    """Names no other locked package depends on: the lockfile's stand-in for "requested".

    conda-lock v1 does not record what the user asked for; the roots of the dependency graph
    are what a spec would have named in the usual case, and they are deterministic (M4).
    """
    needed = {dep.lower() for p in packages for dep in p.dependencies}
    return frozenset(p.name for p in packages if p.name.lower() not in needed)


def solve_only(
    channels: Sequence[str],
    specs: Sequence[str],
    platform: str | None = None,
    *,
    cache_dir: str,
    channel_alias: str = "https://conda.anaconda.org/",
    as_of: str | None = None,
    timeout: float = 600.0,
    virtual_packages: Mapping[str, str | None] | None = None,
    credentials: Credentials | None = None,
) -> list[dict[str, Any]]:
    """Solve without installing, for ``GET /specification/``: one dict per package.

    Each dict has ``name``, ``version``, ``build``, ``channel``, ``url``, ``size``, sorted by
    name, so the API can show what a specification would install.
    """
    urls = channel_urls(channels, channel_alias)
    records = solve_records(
        urls,
        solver_specs(specs, channel_alias),
        platform or host_platform(),
        cache_dir=cache_dir,
        as_of=as_of,
        timeout=timeout,
        virtual_packages=virtual_packages,
        log=lambda _line: None,
        client=make_client(credentials or {}),
    )
    rows = [
        {
            "name": record.name.normalized,
            "version": str(record.version),
            "build": str(record.build),
            "channel": _channel_of(record, urls),
            "url": record.url,
            "size": record.size,
        }
        for record in records
    ]
    return sorted(rows, key=lambda row: str(row["name"]))


def solve_records(
    channels: Sequence[str],
    specs: Sequence[str],
    platform: str,
    *,
    cache_dir: str,
    as_of: str | None,
    timeout: float,
    virtual_packages: Mapping[str, str | None] | None,
    log: Log,
    client: rattler.Client | None = None,
    constraints: Sequence[str] = (),
) -> list[rattler.RepoDataRecord]:
    """Fetch repodata (cached in ``cache_dir``) and solve ``specs`` for ``platform``;
    ``constraints`` (policy pins) bound packages without requesting them."""
    if not channels:
        raise BuildFailure("solve_failed", "the specification names no channel")
    if not specs:
        raise BuildFailure("solve_failed", "the specification lists no conda package")
    virtual = _virtual_packages(platform, virtual_packages)
    cutoff = _as_of(as_of)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    log(f"solving {len(specs)} specs for {platform} from {', '.join(map(redact, channels))}")
    started = datetime.now(UTC)
    subdirs = [platform] + (["noarch"] if platform != "noarch" else [])
    # kept across the builds of a runner; what may have changed is forgotten first
    gateway = gateway_for(Path(cache_dir), client or make_client({}), channels, subdirs)
    records = asyncio.run(
        _solve(channels, specs, platform, virtual, cutoff, timeout, gateway, constraints)
    )
    elapsed = (datetime.now(UTC) - started).total_seconds()
    log(f"solved {len(records)} packages in {elapsed:.2f}s")
    return sorted(records, key=lambda r: r.name.normalized)


async def _solve(
    channels: Sequence[str],
    specs: Sequence[str],
    platform: str,
    virtual: list[rattler.GenericVirtualPackage],
    cutoff: datetime | None,
    timeout: float,
    gateway: rattler.Gateway,
    constraints: Sequence[str] = (),
) -> list[rattler.RepoDataRecord]:
    # An invalid subdir raises here, before any network traffic.
    platforms = [rattler.Subdir(platform)] + (
        [rattler.Subdir("noarch")] if platform != "noarch" else []
    )
    try:
        # Query first so that an unreachable channel is told apart from an unsatisfiable spec.
        await gateway.query(channels, platforms, specs, recursive=True)
    except GatewayError as exc:
        raise unreachable(channels, exc) from None
    try:
        return await rattler.solve(
            channels,
            specs,
            gateway=gateway,
            platforms=platforms,
            virtual_packages=virtual,
            timeout=timedelta(seconds=timeout),
            exclude_newer=cutoff,
            constraints=list(constraints) or None,
        )
    except GatewayError as exc:
        raise unreachable(channels, exc) from None
    except SolverError as exc:
        text = str(exc)
        if "cancelled" in text.lower():
            raise BuildFailure(
                "solve_timeout", f"the solve took longer than {timeout:.0f}s (solve_timeout)"
            ) from None
        raise BuildFailure("solve_failed", text.strip()) from None
    except ValueError as exc:  # an unparsable match spec
        raise BuildFailure("solve_failed", f"invalid package specification: {exc}") from None


def _virtual_packages(
    platform: str, overrides: Mapping[str, str | None] | None
) -> list[rattler.GenericVirtualPackage]:
    """Detected virtual packages (or neutral ones for a foreign platform), then overrides.

    ``overrides`` maps a name to ``version`` or ``version=build``; ``None`` removes the package,
    so tests and admins can simulate a machine (``{"__glibc": "99"}``).
    """
    if platform == host_platform():
        detected = {
            str(v.name.normalized): v
            for v in (p.into_generic() for p in rattler.VirtualPackage.detect())
        }
    else:
        detected = {name: _generic(name, version) for name, version in _defaults(platform)}
    for name, value in (overrides or {}).items():
        if value is None:
            detected.pop(name, None)
        else:
            detected[name] = _generic(name, str(value))
    return list(detected.values())


def _defaults(platform: str) -> list[tuple[str, str]]:
    if platform.startswith("linux"):
        return [("__unix", "0"), ("__linux", "5.10"), ("__glibc", "2.28")]
    if platform.startswith("osx"):
        return [("__unix", "0"), ("__osx", "11.0")]
    if platform.startswith("win"):
        return [("__win", "0")]
    return []


def _generic(name: str, value: str) -> rattler.GenericVirtualPackage:
    version, _, build = value.partition("=")
    try:
        return rattler.GenericVirtualPackage(
            rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build or "0")
        )
    except Exception as exc:  # rattler raises several parse errors; all mean a bad override
        raise InvalidSpec(f"invalid virtual package override {name}={value!r}: {exc}") from None


def _as_of(as_of: str | None) -> datetime | None:
    if not as_of:
        return None
    when = datetime.fromisoformat(as_of)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _read_lockfile(text: str, platform: str) -> Lockfile:
    try:
        lock = Lockfile.from_text(text)
    except InvalidSpec as exc:
        raise BuildFailure("invalid_lockfile", exc.message) from None
    if lock.platform != platform:
        raise BuildFailure(
            "invalid_lockfile", f"the lockfile is for {lock.platform}, this build for {platform}"
        )
    return lock


async def _records_from_lock(
    packages: Sequence[LockedPackage],
    channels: Sequence[str],
    request: BuildRequest,
    client: rattler.Client,
    log: Log,
) -> tuple[list[rattler.RepoDataRecord], list[int]]:
    """Records for exactly the locked packages, each archive fetched and hash-checked first,
    and the bytes each installs.

    The metadata comes from the archive itself (``info/index.json``), so nothing is solved and
    no repodata is needed; every archive is verified before any is installed (I8).
    """
    records, sizes = [], []
    for package in packages:
        path = await _fetch(package.url, request, client)
        actual = file_sha256(path)
        if actual != package.sha256:
            raise BuildFailure(
                "hash_mismatch",
                f"{package.name}: {redact(package.url)} has sha256 {actual}, "
                f"the lockfile says {package.sha256}",
            )
        label = f"{package.name}-{package.version}-{package.build}"
        sizes.append(check_archive(path, label, _limits(request)))
        record = await rattler.RepoDataRecord.from_package_archive(path)
        if package.md5:
            record.md5 = bytes.fromhex(package.md5)
        file_name = unquote(urlsplit(package.url).path.rsplit("/", 1)[-1])
        channel = channel_for_url(package.url, channels) or package.url.rsplit("/", 2)[0] + "/"
        records.append(rattler.RepoDataRecord(record, file_name, package.url, channel))
    log(f"verified {len(records)} archives against the lockfile")
    return sorted(records, key=lambda r: r.name.normalized), sizes


async def _verify_records(
    records: Sequence[rattler.RepoDataRecord],
    request: BuildRequest,
    client: rattler.Client,
    log: Log,
) -> list[int]:
    """Hash-check and safety-check every solved archive before rattler extracts it; return
    the bytes each package installs.

    An archive whose sha256 passed these checks before (under the same limits) is not fetched
    or checked again: rattler verifies what it downloads against the same sha256, so what it
    links is byte-identical to what was checked. This keeps warm builds close to bare rattler.
    """
    skipped = 0
    sizes = []
    for record in records:
        marker = _verified_marker(record.sha256.hex() if record.sha256 else None, request)
        known = _verified_size(marker)
        if known is not None:
            skipped += 1
            sizes.append(known)
            continue
        path = await _fetch(record.url, request, client)
        actual = file_sha256(path)
        expected = record.sha256.hex() if record.sha256 else None
        label = f"{record.name.normalized}-{record.version}-{record.build}"
        if expected and actual != expected:
            raise BuildFailure(
                "hash_mismatch",
                f"{label}: {redact(record.url)} has sha256 {actual}, the channel says {expected}",
                retryable=True,
            )
        sizes.append(check_archive(path, label, _limits(request)))
        if not expected:
            # rattler verifies its own download against this, so it installs what we checked.
            record.sha256 = bytes.fromhex(actual)
        _mark_verified(actual, request, sizes[-1])
    log(f"verified {len(records) - skipped} archives ({skipped} verified by earlier builds)")
    return sizes


def _verified_marker(sha256: str | None, request: BuildRequest) -> Path | None:
    if not sha256:
        return None
    limits = _limits(request)
    key = f"{sha256}-{limits.max_unpacked_bytes}-{limits.max_ratio}"
    return Path(request.conda_pkgs_dir) / ".envstore-verified" / key


def _verified_size(marker: Path | None) -> int | None:
    """The installed bytes a verification marker recorded; None: not verified (or a marker
    of an older envstore, which recorded no size: the archive is checked again)."""
    if marker is None:
        return None
    try:
        text = marker.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _mark_verified(sha256: str, request: BuildRequest, installed: int) -> None:
    marker = _verified_marker(sha256, request)
    assert marker is not None
    marker.parent.mkdir(parents=True, exist_ok=True)
    temporary = marker.with_name(f".{marker.name}.{os.getpid()}")
    temporary.write_text(str(installed))
    temporary.replace(marker)  # concurrent builds never read half a marker


async def _fetch(url: str, request: BuildRequest, client: rattler.Client) -> Path:
    """A local path holding the archive at ``url`` (local channels are read in place)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        if not path.is_file():
            raise BuildFailure("install_failed", f"package file {path} does not exist")
        return path
    downloads = Path(request.work_dir) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / Path(unquote(parts.path)).name
    from rattler.package_streaming import download_to_path

    try:
        await download_to_path(client, url, target)
    except Exception as exc:  # rattler surfaces network errors as RuntimeError and friends
        raise BuildFailure(
            "network_error", f"cannot download {redact(url)}: {exc}", retryable=True
        ) from None
    return target


def _limits(request: BuildRequest) -> ArchiveLimits:
    defaults = ArchiveLimits()
    return ArchiveLimits(
        max_unpacked_bytes=int(
            request.extra.get("max_unpacked_bytes", defaults.max_unpacked_bytes)
        ),
        max_ratio=int(request.extra.get("max_expansion_ratio", defaults.max_ratio)),
    )


def _install(
    records: list[rattler.RepoDataRecord],
    request: BuildRequest,
    platform: str,
    client: rattler.Client,
    log: Log,
) -> None:
    prefix = Path(request.prefix)
    log(f"linking {len(records)} packages into {prefix}")
    try:
        asyncio.run(
            rattler.install(
                records,
                prefix,
                cache_dir=Path(request.conda_pkgs_dir),
                installed_packages=[],
                platform=rattler.Subdir(platform),
                execute_link_scripts=request.run_link_scripts,
                show_progress=False,
                client=client,
            )
        )
    except (InstallerError, OSError, RuntimeError) as exc:
        text = str(exc)
        reason = "no_space" if "No space left" in text else "install_failed"
        raise BuildFailure(reason, f"installing into the prefix failed: {text}") from None


def _prefix_python(prefix: Path) -> str | None:
    python = prefix / "bin" / "python"
    return str(python) if python.exists() else None


def _pip_resolve(
    spec: EnvironmentSpec, python: str | None, request: BuildRequest, platform: str, log: Log
) -> list[LockedPackage]:
    from envstore.backends import pypi

    if python is None:
        raise BuildFailure(
            "interpreter_not_found",
            "the pip: section needs 'python' among the conda dependencies",
        )
    log(f"resolving {len(spec.pip)} pip requirements for {python}")
    return pypi.resolve_for_request(
        request, list(spec.pip), python, requested=spec.requested_names, platform=platform, log=log
    )


def _pip_install(
    packages: Sequence[LockedPackage], python: str | None, request: BuildRequest, log: Log
) -> None:
    conda_records.pip_install(packages, python, request, log)


def _result(
    records: Sequence[rattler.RepoDataRecord],
    pip_locked: Sequence[LockedPackage],
    sizes: Sequence[int],
    channels: Sequence[str],
    spec: EnvironmentSpec,
    requested: frozenset[str],
    request: BuildRequest,
    platform: str,
    as_of: str | None,
) -> BuildResult:
    conda_locked = [conda_records.locked(r, platform, requested) for r in records]
    python_version = next((str(r.version) for r in records if r.name.normalized == "python"), None)
    lock = Lockfile(
        platform=platform,
        packages=tuple(conda_locked) + tuple(pip_locked),
        channels=tuple(channels),
        python_version=python_version,
        as_of=as_of,
    )
    infos = [
        conda_records.package_info(r, channels, requested, request.conda_pkgs_dir) for r in records
    ]
    infos += [conda_records.pip_info(p, request.pypi_index_url) for p in pip_locked]
    return BuildResult(
        lockfile=lock.to_yaml(),
        pinned_yaml=_pinned_yaml(spec, records, pip_locked, channels),
        packages=sorted(infos, key=lambda i: (i.manager, i.name)),
        # the bytes the verified archives install, plus conda's and pip's metadata: no walk
        size=sum(sizes) + conda_records.metadata_size(Path(request.prefix)),
        python_version=python_version,
    )


def _pinned_yaml(
    spec: EnvironmentSpec,
    records: Sequence[rattler.RepoDataRecord],
    pip_locked: Sequence[LockedPackage],
    channels: Sequence[str],
) -> str:
    deps: list[Any] = [f"{r.name.normalized}={r.version}={r.build}" for r in records]
    if pip_locked:
        deps.append({"pip": sorted(f"{p.name}=={p.version}" for p in pip_locked)})
    data: dict[str, Any] = {"name": spec.name, "channels": list(channels), "dependencies": deps}
    if spec.variables:
        data["variables"] = dict(sorted(spec.variables.items()))
    if spec.virtual_packages:
        data["virtual_packages"] = dict(sorted(spec.virtual_packages.items()))
    return dump_yaml(data)


def _channel_of(record: rattler.RepoDataRecord, channels: Sequence[str]) -> str:
    return channel_for_url(record.url, channels) or str(record.channel or "")
