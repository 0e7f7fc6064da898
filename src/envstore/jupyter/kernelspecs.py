"""``envstore kernels sync``: one standard Jupyter kernelspec per environment the user may read
whose current build has ``ipykernel``, plus pinned variants that name one exact build.

A kernelspec is a directory ``<kernels dir>/envstore-NS-NAME/`` with ``kernel.json`` and logos,
so every Jupyter tool finds it without a plugin. Its ``argv`` runs envstore's launcher
(``python -m envstore kernel NS/NAME[@BUILD_KEY] -f {connection_file}``), which resolves the
reference when the kernel starts. ``metadata.envstore`` marks the kernelspecs this module wrote
(with the server URL), so a sync removes only its own, and only those of the same server.
A server that cannot be reached leaves every kernelspec as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envstore.cli.client import EnvstoreClient, ServerError
from envstore.cli.common import parse_selector_ref
from envstore.core.builds import BuildStatus
from envstore.errors import Forbidden, InvalidInput, NotFound, Unavailable

__all__ = ["KERNEL_PREFIX", "SyncReport", "kernels_dir", "read_own_specs", "sync_kernelspecs"]

KERNEL_PREFIX = "envstore-"
KERNEL_PACKAGE = "ipykernel"
_MARK = "envstore"
_RESOURCES = Path(__file__).parent / "resources"
_LOGOS = ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg")


def kernels_dir(*, user: bool = False, sys_prefix: bool = False, prefix: str | None = None) -> Path:
    """Where kernelspecs go, as ``jupyter kernelspec install`` chooses: ``--prefix P``,
    ``--sys-prefix`` (this interpreter's environment) or ``--user`` (the default)."""
    if prefix:
        return Path(prefix) / "share" / "jupyter" / "kernels"
    if sys_prefix:
        return Path(sys.prefix) / "share" / "jupyter" / "kernels"
    try:
        from jupyter_core.paths import jupyter_data_dir
    except ImportError:
        raise InvalidInput(
            "the Jupyter integration is not installed; pip install 'envstore[jupyter]'"
        ) from None
    return Path(jupyter_data_dir()) / "kernels"


@dataclass(frozen=True)
class _Wanted:
    namespace: str
    name: str
    build: dict[str, Any]
    pinned: bool

    @property
    def ref(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}@{self.build['build_key']}" if self.pinned else base

    @property
    def base_name(self) -> str:
        base = f"{KERNEL_PREFIX}{self.namespace}-{self.name}".lower()
        return f"{base}--b{self.build['id']}" if self.pinned else base

    @property
    def display_name(self) -> str:
        if self.pinned:
            return f"{self.name} @ build {self.build['id']} ({self.namespace}, envstore)"
        return f"{self.name} ({self.namespace}, envstore)"


@dataclass
class SyncReport:
    """What a sync did; ``offline`` holds the reason when the server could not be asked."""

    directory: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    offline: str | None = None


def read_own_specs(directory: Path, url: str) -> dict[str, dict[str, Any]]:
    """The kernelspecs in ``directory`` that a sync against ``url`` wrote: name → metadata."""
    found: dict[str, dict[str, Any]] = {}
    if not directory.is_dir():
        return found
    for entry in sorted(directory.iterdir()):
        if not entry.name.startswith(KERNEL_PREFIX) or entry.is_symlink():
            continue
        try:
            spec = json.loads((entry / "kernel.json").read_text())
        except (OSError, ValueError):
            continue
        mark = spec.get("metadata", {}).get(_MARK) if isinstance(spec, dict) else None
        if isinstance(mark, dict) and mark.get("url") == url:
            found[entry.name] = mark
    return found


def _current_kernels(client: EnvstoreClient, known_prefixes: dict[str, str]) -> list[_Wanted]:
    """Environments whose current build is COMPLETED and has ipykernel (one filtered list).

    Lists show no prefix; it is asked for only for builds no earlier sync recorded.
    """
    wanted = []
    for env in client.list_environments(packages=(KERNEL_PACKAGE,)):
        build = dict(env.get("current_build") or {})
        key = build.get("build_key")
        if build.get("status") != BuildStatus.COMPLETED or not key:
            continue
        known = known_prefixes.get(str(key))
        build["prefix"] = known if known else client.get_build(int(build["id"])).get("prefix")
        wanted.append(_Wanted(env["namespace"]["name"], env["name"], build, pinned=False))
    return wanted


def _pinned_kernel(client: EnvstoreClient, reference: str) -> _Wanted:
    """The build ``NS/NAME@REF`` names now, which must be COMPLETED and have ipykernel."""
    env_ref, selector = parse_selector_ref(reference)
    if not selector:
        raise InvalidInput(f"--pin {reference!r}: name a build, NS/NAME@BUILD_KEY or @DATE")
    build = client.resolve(env_ref.namespace, env_ref.name, selector)
    if build.get("status") != BuildStatus.COMPLETED or not build.get("build_key"):
        raise InvalidInput(f"{reference}: build {build.get('id')} is {build.get('status')}")
    if not client.build_has_package(int(build["id"]), KERNEL_PACKAGE):
        raise InvalidInput(f"{reference}: build {build['id']} has no {KERNEL_PACKAGE}")
    return _Wanted(env_ref.namespace, env_ref.name, build, pinned=True)


def _still_pinned(client: EnvstoreClient, mark: dict[str, Any]) -> _Wanted | None:
    """A pinned kernelspec of an earlier sync, if its build is still there and readable."""
    reference = f"{mark.get('namespace')}/{mark.get('name')}@{mark.get('build_key')}"
    try:
        return _pinned_kernel(client, reference)
    except (NotFound, Forbidden, InvalidInput):
        return None


def _name_all(wanted: list[_Wanted]) -> dict[str, _Wanted]:
    """Kernel names, lower case as Jupyter looks them up; a clash gets a short hash suffix."""
    named: dict[str, _Wanted] = {}
    for item in sorted(wanted, key=lambda w: (w.pinned, w.ref)):
        name = item.base_name
        if name in named and named[name].ref != item.ref:
            name = f"{name}-{hashlib.sha256(item.ref.encode()).hexdigest()[:8]}"
        named.setdefault(name, item)
    return named


def kernel_json(url: str, item: _Wanted) -> dict[str, Any]:
    build = item.build
    return {
        "argv": [sys.executable, "-m", "envstore", "kernel", item.ref, "-f", "{connection_file}"],
        "display_name": item.display_name,
        "language": "python",
        "interrupt_mode": "signal",
        # The launcher falls back to the last synced build when the server is unreachable.
        "env": {
            "ENVSTORE_URL": url,
            "ENVSTORE_KERNEL_LAST_BUILD": str(build["build_key"]),
            "ENVSTORE_KERNEL_LAST_PREFIX": str(build.get("prefix") or ""),
        },
        "metadata": {
            _MARK: {
                "url": url,
                "namespace": item.namespace,
                "name": item.name,
                "pinned": item.pinned,
                "build_id": build["id"],
                "build_key": build["build_key"],
                "prefix": build.get("prefix"),
            }
        },
    }


def _write(directory: Path, name: str, spec: dict[str, Any]) -> bool:
    """Write one kernelspec (atomically per file); False when it was already up to date."""
    target = directory / name
    text = json.dumps(spec, indent=1, sort_keys=True) + "\n"
    kernel_file = target / "kernel.json"
    try:
        if kernel_file.read_text() == text:
            return False
    except OSError:
        pass
    target.mkdir(parents=True, exist_ok=True)
    for logo in _LOGOS:
        if not (target / logo).exists():
            shutil.copyfile(_RESOURCES / logo, target / logo)
    temporary = target / f".kernel.json.{os.getpid()}"
    temporary.write_text(text)
    temporary.replace(kernel_file)
    return True


def _wanted_now(
    client: EnvstoreClient, existing: dict[str, dict[str, Any]], pins: tuple[str, ...]
) -> list[_Wanted]:
    known = {str(m.get("build_key")): str(m.get("prefix") or "") for m in existing.values()}
    wanted = _current_kernels(client, known)
    wanted += [_pinned_kernel(client, pin) for pin in pins]
    for mark in existing.values():
        if mark.get("pinned"):
            kept = _still_pinned(client, mark)
            if kept is not None:
                wanted.append(kept)
    return wanted


def sync_kernelspecs(
    client: EnvstoreClient, directory: Path, *, pins: tuple[str, ...] = ()
) -> SyncReport:
    """Bring ``directory`` in step with the server: write, update and remove own kernelspecs.

    Raises for bad ``pins`` (before anything is written); an unreachable or failing server is
    reported in ``SyncReport.offline`` and changes nothing.
    """
    report = SyncReport(directory)
    existing = read_own_specs(directory, client.url)
    try:
        wanted = _name_all(_wanted_now(client, existing, pins))
    except (Unavailable, ServerError) as exc:
        report.offline = exc.message
        return report
    directory.mkdir(parents=True, exist_ok=True)
    for name, item in sorted(wanted.items()):
        changed = _write(directory, name, kernel_json(client.url, item))
        (report.written if changed else report.unchanged).append(name)
    for name in sorted(set(existing) - set(wanted)):
        shutil.rmtree(directory / name, ignore_errors=True)
        report.removed.append(name)
    return report
