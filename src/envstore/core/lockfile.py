"""The lockfile model: conda-lock format version 1.

A lockfile lists every package of one build for one platform with its exact version, download
URL and hashes (``manager: conda`` or ``manager: pip``). It is what makes a build reproducible:
installing from it never solves again. Serialisation is deterministic (sorted packages, fixed
key order), so the same package set always gives byte-identical text (RELIABILITY.md M4).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from envstore.core.yamlsafe import dump_yaml, load_bounded_yaml
from envstore.errors import InvalidSpec

__all__ = ["LockedPackage", "Lockfile"]

Manager = Literal["conda", "pip"]


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    manager: Manager
    platform: str
    url: str
    sha256: str
    md5: str | None = None
    build: str | None = None
    dependencies: dict[str, str] = field(default_factory=dict)
    requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        hashes = (
            {"sha256": self.sha256}
            if self.md5 is None
            else {"md5": self.md5, "sha256": self.sha256}
        )
        return {
            "name": self.name,
            "version": self.version,
            "manager": self.manager,
            "platform": self.platform,
            "dependencies": dict(sorted(self.dependencies.items())),
            "url": self.url,
            "hash": hashes,
            "category": "main",
            "optional": False,
        }


@dataclass(frozen=True)
class Lockfile:
    """Every package of a build. ``metadata`` carries platform, channels and the interpreter."""

    platform: str
    packages: tuple[LockedPackage, ...]
    channels: tuple[str, ...] = ()
    python_version: str | None = None
    as_of: str | None = None
    sources: tuple[str, ...] = ("environment.yaml",)

    @property
    def content_hash(self) -> str:
        body = json.dumps([p.to_dict() for p in self.sorted_packages()], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def sorted_packages(self) -> list[LockedPackage]:
        return sorted(self.packages, key=lambda p: (p.manager != "conda", p.name, p.version, p.url))

    def to_dict(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "content_hash": {self.platform: self.content_hash},
            "channels": [{"url": url, "used_env_vars": []} for url in self.channels],
            "platforms": [self.platform],
            "sources": list(self.sources),
        }
        if self.python_version:
            metadata["python_version"] = self.python_version
        if self.as_of:
            metadata["as_of"] = self.as_of
        return {
            "version": 1,
            "metadata": metadata,
            "package": [p.to_dict() for p in self.sorted_packages()],
        }

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    @classmethod
    def from_text(cls, text: str, *, max_depth: int = 20) -> Lockfile:
        """Parse a conda-lock v1 document; every package must carry a sha256 (I9)."""
        data = load_bounded_yaml(text, max_depth=max_depth, max_aliases=0)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise InvalidSpec("lockfile must be a conda-lock document with 'version: 1'")
        metadata = data.get("metadata") or {}
        platforms = metadata.get("platforms") or []
        if not isinstance(platforms, list) or len(platforms) != 1:
            raise InvalidSpec("lockfile must name exactly one platform in metadata.platforms")
        entries = data.get("package")
        if not isinstance(entries, list) or not entries:
            raise InvalidSpec("lockfile lists no packages")
        packages = tuple(_package(entry, index) for index, entry in enumerate(entries))
        channels = tuple(
            str(c["url"])
            for c in metadata.get("channels") or []
            if isinstance(c, dict) and "url" in c
        )
        return cls(
            platform=str(platforms[0]),
            packages=packages,
            channels=channels,
            python_version=metadata.get("python_version"),
            as_of=metadata.get("as_of"),
        )


def _package(entry: Any, index: int) -> LockedPackage:
    if not isinstance(entry, dict):
        raise InvalidSpec(f"lockfile package #{index + 1} is not a mapping")
    missing = [key for key in ("name", "version", "manager", "url", "hash") if key not in entry]
    if missing:
        raise InvalidSpec(f"lockfile package #{index + 1} misses {', '.join(missing)}")
    hashes = entry["hash"] if isinstance(entry["hash"], dict) else {}
    sha256 = str(hashes.get("sha256") or "")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidSpec(f"lockfile package {entry['name']!r} has no valid sha256 hash")
    if entry["manager"] not in ("conda", "pip"):
        raise InvalidSpec(
            f"lockfile package {entry['name']!r} has unknown manager {entry['manager']!r}"
        )
    url = str(entry["url"])
    if not url.startswith(("https://", "http://", "file://")):
        raise InvalidSpec(f"lockfile package {entry['name']!r} has an unsupported url {url!r}")
    deps = entry.get("dependencies") or {}
    return LockedPackage(
        name=str(entry["name"]),
        version=str(entry["version"]),
        manager=entry["manager"],
        platform=str(entry.get("platform", "")),
        url=url,
        sha256=sha256,
        md5=hashes.get("md5"),
        build=entry.get("build"),
        dependencies={str(k): str(v) for k, v in deps.items()} if isinstance(deps, dict) else {},
    )
