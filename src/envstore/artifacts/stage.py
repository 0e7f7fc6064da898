"""The artifacts stage of the build process (after lock): archive and OCI image files.

It runs in the child, next to the prefix it reads, so that cancel and the build timeout cover
it and a crash leaves nothing half-stored; it only writes files under ``work_dir/artifacts``.
The parent (``jobs.executor``) uploads them, verified by digest, and then links them to the
build in the database. Each artifact's time is logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from envstore.artifacts.oci import build_image
from envstore.artifacts.tarball import TreeOptions, write_tree

__all__ = ["ARCHIVE_MEDIA_TYPE", "produce_artifacts"]

ARCHIVE_MEDIA_TYPE = "application/gzip"


def produce_artifacts(
    prefix: Path,
    work_dir: Path,
    kinds: list[str],
    *,
    variables: dict[str, str],
    image_prefix: str = "/opt/env",
    base_layer: str | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Write the requested artifact files; describe each as a dict for ``BuildResult``.

    The archive and the image are written at the same time: both spend most of their time in
    zlib, which releases the GIL, so two cores finish them in about the time of one.
    """
    out = work_dir / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[Callable[[], list[dict[str, Any]]]] = []
    if "CONDA_PACK" in kinds:
        jobs.append(lambda: _archive(prefix, out, variables, log))
    if "DOCKER_MANIFEST" in kinds:
        jobs.append(lambda: _image(prefix, out, variables, image_prefix, base_layer, log))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return [file for files in pool.map(lambda job: job(), jobs) for file in files]


def _archive(
    prefix: Path, out: Path, variables: dict[str, str], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    start = time.monotonic()
    staging = out / "archive.tar.gz"
    options = TreeOptions(old_prefix=str(prefix), new_prefix=str(prefix), variables=variables)
    with staging.open("wb") as handle:
        _, digest = write_tree(prefix, handle, options)
    size = staging.stat().st_size
    log(f"CONDA_PACK: {size} bytes in {time.monotonic() - start:.2f}s")
    return [_file("CONDA_PACK", "archive", staging, digest, size, ARCHIVE_MEDIA_TYPE)]


def _image(
    prefix: Path,
    out: Path,
    variables: dict[str, str],
    image_prefix: str,
    base_layer: str | None,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    start = time.monotonic()
    blobs = build_image(
        prefix,
        out / "oci",
        image_prefix=image_prefix,
        variables=variables,
        base_layer=Path(base_layer) if base_layer else None,
    )
    files = [
        _file(None, "oci-blob", blob.path, blob.digest, blob.size, blob.media_type)
        for blob in blobs[:-1]
    ]
    manifest = blobs[-1]
    files.append(
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
        f"DOCKER_MANIFEST: {sum(blob.size for blob in blobs)} bytes in {time.monotonic() - start:.2f}s"
    )
    return files


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
