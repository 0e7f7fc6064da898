"""The store directory layout and the atomic current-build symlink.

``<store>/envs/<namespace>/<build-key>/`` holds one build's prefix, never reused;
``<store>/envs/<namespace>/<environment>`` is a symlink to the current build's prefix, switched
with a temporary link and ``os.replace`` so readers never see it missing. Paths are built only
from validated names and build keys, never from raw input.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from envstore.core.names import validate_name

__all__ = ["StoreLayout"]


@dataclass(frozen=True)
class StoreLayout:
    envs_dir: Path

    def prefix(self, namespace: str, build_key: str) -> Path:
        validate_name(namespace, kind="namespace")
        validate_name(build_key, kind="build key", max_length=512)
        return self.envs_dir / namespace / build_key

    def link(self, namespace: str, environment: str) -> Path:
        validate_name(namespace, kind="namespace")
        validate_name(environment, kind="environment name")
        return self.envs_dir / namespace / environment

    def publish(self, namespace: str, environment: str, build_key: str | None) -> None:
        """Point the environment's link at ``build_key`` (or remove it when None), atomically."""
        link = self.link(namespace, environment)
        if build_key is None:
            link.unlink(missing_ok=True)
            return
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{environment}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(build_key)
        tmp.replace(link)

    def remove_prefix(self, namespace: str, build_key: str) -> None:
        shutil.rmtree(self.prefix(namespace, build_key), ignore_errors=True)
