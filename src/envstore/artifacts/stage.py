"""Packing a built environment: the relocatable archive and the OCI image, in one pass.

It runs in a build process (``envstore.pipeline.runner``) as a *pack job*, after the build is
COMPLETED (``envstore.jobs.packer``): the prefix is read once and each file goes to both
outputs, the archive through a threaded igzip and the image layer through a threaded zstd, so
packing costs about one read of the prefix plus the slower of the two compressors. It only
writes files under ``work_dir/artifacts``; the parent uploads them, verified by digest, and
links them to the build.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envstore.artifacts.oci import assemble_image, finish_layer, layer_output
from envstore.artifacts.tarball import (
    ZSTD_LEVEL,
    Compression,
    TreeOptions,
    TreeOutput,
    write_trees,
)

__all__ = ["ARCHIVE_MEDIA_TYPE", "FILE_ARTIFACTS", "produce_artifacts"]

ARCHIVE_MEDIA_TYPE = "application/gzip"
FILE_ARTIFACTS = ("CONDA_PACK", "DOCKER_MANIFEST")  # the artifacts a pack job writes


def produce_artifacts(
    prefix: Path,
    work_dir: Path,
    kinds: list[str],
    *,
    variables: dict[str, str],
    image_prefix: str = "/opt/env",
    base_layer: str | None = None,
    layer_compression: Compression = "zstd",
    zstd_level: int = ZSTD_LEVEL,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Write the requested artifact files; describe each as a dict (``PackResult``)."""
    if not prefix.is_dir():  # an empty archive would look like a good one
        raise FileNotFoundError(f"the environment to pack is not at {prefix}")
    out = work_dir / "artifacts"
    (out / "oci").mkdir(parents=True, exist_ok=True)
    archive_path, layer_path = out / "archive.tar.gz", out / "oci" / ".layer.tmp"
    start = time.monotonic()
    with contextlib.ExitStack() as files:
        outputs: list[TreeOutput] = []
        if "CONDA_PACK" in kinds:
            options = TreeOptions(
                old_prefix=str(prefix), new_prefix=str(prefix), variables=variables
            )
            # "x": a new file, never one a blob store may have linked (put_hashed_file)
            handle = files.enter_context(archive_path.open("xb"))
            outputs.append(TreeOutput(handle, options, tar_digest=False))
        if "DOCKER_MANIFEST" in kinds:
            handle = files.enter_context(layer_path.open("xb"))
            outputs.append(
                layer_output(handle, prefix, image_prefix, variables, layer_compression, zstd_level)
            )
        digests = write_trees(prefix, outputs) if outputs else []
    described: list[dict[str, Any]] = []
    if "CONDA_PACK" in kinds:
        _, digest = digests.pop(0)
        size = archive_path.stat().st_size
        described.append(
            _file("CONDA_PACK", "archive", archive_path, digest, size, ARCHIVE_MEDIA_TYPE)
        )
        log(f"CONDA_PACK: {size} bytes (gzip)")
    if "DOCKER_MANIFEST" in kinds:
        diff_id, digest = digests.pop(0)
        layer = finish_layer(layer_path, diff_id, digest, layer_compression)
        blobs = assemble_image(
            prefix,
            out / "oci",
            layer,
            image_prefix=image_prefix,
            variables=variables,
            base_layer=Path(base_layer) if base_layer else None,
        )
        described += [
            _file(None, "oci-blob", blob.path, blob.digest, blob.size, blob.media_type)
            for blob in blobs[:-1]
        ]
        manifest = blobs[-1]
        described.append(
            _file(
                "DOCKER_MANIFEST",
                "oci-manifest",
                manifest.path,
                manifest.digest,
                manifest.size,
                manifest.media_type,
            )
        )
        log(
            f"DOCKER_MANIFEST: {sum(blob.size for blob in blobs)} bytes ({layer_compression} layer)"
        )
    log(
        f"packed {', '.join(k for k in FILE_ARTIFACTS if k in kinds)} in {time.monotonic() - start:.2f}s"
    )
    return described


def _file(
    kind: str | None, role: str, path: Path, digest: str, size: int, media_type: str
) -> dict[str, Any]:
    return {
        "artifact_type": kind,
        "role": role,
        "path": str(path),
        "sha256": digest,
        "size": size,
        "media_type": media_type,
    }
