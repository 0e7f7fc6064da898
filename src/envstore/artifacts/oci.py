"""An OCI image of a built environment, written without a container engine.

One layer holds the prefix at ``oci_prefix`` (``/opt/env``) with every embedded build prefix
rewritten to it, plus ``bin/conda-unpack`` to move it again; an optional base layer (a root
filesystem tarball from the settings) goes under it. Layers are reproducible (see
:mod:`.tarball`) and the config and manifest are canonical JSON with a fixed creation time, so
the same prefix gives the same manifest digest. Blobs are written to ``out_dir`` named by
digest; the parent process stores them and links the manifest to the build.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envstore.artifacts.tarball import HashingWriter, TreeOptions, write_tree

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "ImageBlob",
    "build_image",
    "canonical_json",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
_EPOCH = "1970-01-01T00:00:00Z"
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le"}


@dataclass(frozen=True)
class ImageBlob:
    path: Path
    digest: str  # hex, without "sha256:"
    size: int
    media_type: str
    diff_id: str | None = None  # layers only: digest of the uncompressed tar


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build_image(
    prefix: Path,
    out_dir: Path,
    *,
    image_prefix: str,
    variables: dict[str, str],
    base_layer: Path | None = None,
) -> list[ImageBlob]:
    """Write layer(s), config and manifest blobs; the manifest is the last element."""
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = [_base_layer(base_layer, out_dir)] if base_layer else []
    layers.append(_env_layer(prefix, out_dir, image_prefix, variables))
    config = _write(out_dir, canonical_json(_config(layers, image_prefix, prefix, variables)))
    config_blob = ImageBlob(config[0], config[1], config[2], CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": _descriptor(config_blob),
        "layers": [_descriptor(layer) for layer in layers],
    }
    path, digest, size = _write(out_dir, canonical_json(manifest))
    return [*layers, config_blob, ImageBlob(path, digest, size, MANIFEST_MEDIA_TYPE)]


def _descriptor(blob: ImageBlob) -> dict[str, Any]:
    return {"mediaType": blob.media_type, "digest": f"sha256:{blob.digest}", "size": blob.size}


def _write(out_dir: Path, data: bytes) -> tuple[Path, str, int]:
    digest = hashlib.sha256(data).hexdigest()
    path = out_dir / digest
    path.write_bytes(data)
    return path, digest, len(data)


def _env_layer(prefix: Path, out_dir: Path, image_prefix: str, vars_: dict[str, str]) -> ImageBlob:
    staging = out_dir / ".layer.tmp"
    options = TreeOptions(
        arcroot=image_prefix.strip("/"),
        old_prefix=str(prefix),
        new_prefix=image_prefix,
        variables=vars_,
    )
    with staging.open("wb") as out:
        diff_id, digest = write_tree(prefix, out, options)
    final = out_dir / digest
    staging.replace(final)
    return ImageBlob(final, digest, final.stat().st_size, LAYER_MEDIA_TYPE, diff_id)


def _base_layer(source: Path, out_dir: Path) -> ImageBlob:
    """The configured root filesystem as a gzipped layer (gzipped reproducibly if plain)."""
    with source.open("rb") as head:
        is_gzip = head.read(2) == b"\x1f\x8b"
    staging = out_dir / ".base.tmp"
    if is_gzip:
        shutil.copyfile(source, staging)
        with gzip.open(source, "rb") as plain:
            diff_id = hashlib.file_digest(plain, "sha256").hexdigest()
    else:
        with staging.open("wb") as out, source.open("rb") as plain_in:
            compressed = HashingWriter(out)
            # level 6: about twice as fast as 9 for ~2 % more bytes; fixed, so digests stay stable
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6
            ) as zipped:
                shutil.copyfileobj(plain_in, zipped)
        diff_id = hashlib.sha256(source.read_bytes()).hexdigest()
    with staging.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    final = out_dir / digest
    staging.replace(final)
    return ImageBlob(final, digest, final.stat().st_size, LAYER_MEDIA_TYPE, diff_id)


def _config(
    layers: list[ImageBlob], image_prefix: str, prefix: Path, variables: dict[str, str]
) -> dict[str, Any]:
    env = [f"PATH={image_prefix}/bin:{_SYSTEM_PATH}", f"CONDA_PREFIX={image_prefix}"]
    if (prefix / "pyvenv.cfg").exists():
        env.append(f"VIRTUAL_ENV={image_prefix}")
    env += [f"{k}={v}" for k, v in sorted(variables.items())]
    return {
        "architecture": _ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": _EPOCH,
        "config": {"Env": env, "WorkingDir": "/", "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer.diff_id}" for layer in layers]},
        "history": [{"created": _EPOCH, "created_by": "envstore"} for _ in layers],
    }
