"""The store directory layout and the atomic current-build symlink.

Build prefixes and environment links live in two trees, so no name can make one collide with
the other (D7)::

    <store>/builds/<namespace>/<build-key>/   one build's prefix, never reused
    <store>/envs/<namespace>/<environment>    symlink to the current build's prefix

Stores made before this layout kept prefixes beside the links
(``<store>/envs/<namespace>/<build-key>/``); those prefixes stay where they are (an installed
prefix cannot move: its paths are written into its files) and are still found, linked and
collected there. The link is switched with a temporary link and ``os.replace`` so readers never
see it missing, and only ever replaces or removes a symlink: a file or directory that envstore
did not create as a link is left alone and reported. Paths are built only from validated names
and build keys, never from raw input.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from envstore.core.names import validate_name
from envstore.errors import Conflict

__all__ = ["StoreLayout"]


@dataclass(frozen=True)
class StoreLayout:
    envs_dir: Path

    @property
    def store_dir(self) -> Path:
        return self.envs_dir.parent

    @property
    def builds_dir(self) -> Path:
        return self.store_dir / "builds"

    def prefix(self, namespace: str, build_key: str) -> Path:
        """Where a new build's prefix goes (and where every build since this layout lives)."""
        validate_name(namespace, kind="namespace")
        validate_name(build_key, kind="build key", max_length=512)
        return self.builds_dir / namespace / build_key

    def legacy_prefix(self, namespace: str, build_key: str) -> Path:
        """Where a build made before the two-tree layout has its prefix."""
        validate_name(namespace, kind="namespace")
        validate_name(build_key, kind="build key", max_length=512)
        return self.envs_dir / namespace / build_key

    def existing_prefix(self, namespace: str, build_key: str) -> Path:
        """The build's prefix: the current layout's, else an older store's if that exists."""
        current = self.prefix(namespace, build_key)
        legacy = self.legacy_prefix(namespace, build_key)
        if not current.is_dir() and legacy.is_dir() and not legacy.is_symlink():
            return legacy
        return current

    def link(self, namespace: str, environment: str) -> Path:
        validate_name(namespace, kind="namespace")
        validate_name(environment, kind="environment name")
        return self.envs_dir / namespace / environment

    def check_link(self, namespace: str, environment: str) -> Path:
        """The environment's link path; Conflict if something that is not envstore's link is
        there (a directory left by an older store, say), which publishing must not replace."""
        link = self.link(namespace, environment)
        if link.parent.is_symlink():
            raise Conflict(f"{link.parent} is a symlink; envstore will not publish through it")
        if os.path.lexists(link) and not link.is_symlink():
            raise Conflict(
                f"environment {namespace}/{environment}: {link} exists and is not an "
                "environment link; move it away to publish this environment"
            )
        return link

    def publish(self, namespace: str, environment: str, build_key: str | None) -> None:
        """Point the environment's link at ``build_key`` (or remove it when None), atomically."""
        if build_key is None:  # only ever a link of ours: anything else stays where it is
            link = self.link(namespace, environment)
            if link.is_symlink():
                link.unlink()
            return
        link = self.check_link(namespace, environment)
        target = self.existing_prefix(namespace, build_key)
        link.parent.mkdir(parents=True, exist_ok=True)
        # unique per call: two publishers of one environment never share a temporary link
        tmp = link.with_name(f".{environment}.{uuid.uuid4().hex[:16]}.tmp")
        try:
            tmp.symlink_to(os.path.relpath(target, link.parent))
            tmp.replace(link)
        finally:
            tmp.unlink(missing_ok=True)

    def restore_link(self, namespace: str, environment: str, target: str | None) -> None:
        """Put back what :meth:`publish` replaced: the link's previous ``target`` as it was
        read (``os.readlink``), or no link when there was none."""
        link = self.check_link(namespace, environment)
        if target is None:
            if link.is_symlink():
                link.unlink()
            return
        tmp = link.with_name(f".{environment}.{uuid.uuid4().hex[:16]}.tmp")
        try:
            tmp.symlink_to(target)
            tmp.replace(link)
        finally:
            tmp.unlink(missing_ok=True)

    def remove_prefix(self, namespace: str, build_key: str) -> None:
        shutil.rmtree(self.prefix(namespace, build_key), ignore_errors=True)
        legacy = self.legacy_prefix(namespace, build_key)
        if legacy.is_dir() and not legacy.is_symlink():
            shutil.rmtree(legacy, ignore_errors=True)
