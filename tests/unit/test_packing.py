"""Packing a prefix (issue 11): one read for the archive and the image layer, zstd or gzip
layers, the same bytes whatever the number of compression threads."""

from __future__ import annotations

import errno
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import zstandard
from pydantic import ValidationError

from envstore.artifacts.oci import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    ZSTD_LAYER_MEDIA_TYPE,
    build_image,
)
from envstore.artifacts.stage import produce_artifacts
from envstore.artifacts.tarball import (
    ThreadedWriter,
    TreeOptions,
    TreeOutput,
    write_tree,
    write_trees,
)
from envstore.services.packing import pack_key
from envstore.settings import Settings


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    root = tmp_path / "envs" / "build-1"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "bin" / "tool").write_text(f"#!{root}/bin/python\nprint('hi')\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "lib" / "big.bin").write_bytes(bytes(range(256)) * 8192)  # over the 1 MiB flush
    (root / "lib" / "embedded.so").write_bytes(b"\x7fELF\0" + str(root).encode() + b"/lib\0rest")
    (root / "lib" / "link").symlink_to(root / "bin" / "tool")
    return root


def _members(data: bytes, compression: str) -> dict[str, bytes]:
    if compression == "zstd":
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    else:
        data = gzip.decompress(data)
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            found[member.name] = extracted.read() if extracted else member.linkname.encode()
    return found


def test_one_pass_writes_what_two_passes_write(prefix: Path) -> None:
    archive = TreeOptions(old_prefix=str(prefix), new_prefix=str(prefix))
    layer = TreeOptions(arcroot="opt/env", old_prefix=str(prefix), new_prefix="/opt/env")
    alone = []
    for options, compression in ((archive, "gzip"), (layer, "zstd")):
        out = io.BytesIO()
        alone.append((write_tree(prefix, out, options, compression), out.getvalue()))
    outs = [io.BytesIO(), io.BytesIO()]
    together = write_trees(
        prefix, [TreeOutput(outs[0], archive, "gzip"), TreeOutput(outs[1], layer, "zstd")]
    )
    assert together == [digests for digests, _ in alone]
    assert [out.getvalue() for out in outs] == [data for _, data in alone]

    packed = _members(outs[0].getvalue(), "gzip")
    assert packed["bin/tool"].startswith(f"#!{prefix}/bin/python".encode())
    assert packed["lib/link"] == b"../bin/tool"  # an absolute link into the prefix: relative
    manifest = json.loads(packed[".envstore/relocate.json"])
    assert manifest["prefix"] == str(prefix)
    assert sorted(manifest["files"]) == [["bin/tool", "text"], ["lib/embedded.so", "binary"]]
    image = _members(outs[1].getvalue(), "zstd")
    assert image["opt/env/bin/tool"].startswith(b"#!/opt/env/bin/python")
    padded = image["opt/env/lib/embedded.so"]
    assert padded.startswith(b"\x7fELF\0/opt/env/lib\0") and len(padded) == len(
        packed["lib/embedded.so"]
    )
    assert image["opt/env/lib/big.bin"] == packed["lib/big.bin"]


def test_every_output_of_a_pass_rewrites_the_same_prefix(prefix: Path) -> None:
    with pytest.raises(ValueError, match="same prefix"):
        write_trees(
            prefix,
            [
                TreeOutput(io.BytesIO(), TreeOptions(old_prefix="/a", new_prefix="/a")),
                TreeOutput(io.BytesIO(), TreeOptions(old_prefix="/b", new_prefix="/b")),
            ],
        )


@pytest.mark.parametrize(
    ("compression", "media_type"), [("zstd", ZSTD_LAYER_MEDIA_TYPE), ("gzip", LAYER_MEDIA_TYPE)]
)
def test_image_is_reproducible_with_either_layer_compression(
    prefix: Path, tmp_path: Path, compression: str, media_type: str
) -> None:
    digests = []
    for n in range(2):
        blobs = build_image(
            prefix,
            tmp_path / f"oci-{compression}-{n}",
            image_prefix="/opt/env",
            variables={"A": "1"},
            compression=compression,  # type: ignore[arg-type]
        )
        digests.append(blobs[-1].digest)
        layer = blobs[0]
        assert layer.media_type == media_type
        manifest = json.loads(blobs[-1].path.read_bytes())
        assert manifest["layers"][0]["mediaType"] == media_type
        assert "opt/env/bin/conda-unpack" in _members(layer.path.read_bytes(), compression)
    assert digests[0] == digests[1]


def test_packing_a_missing_prefix_fails_instead_of_an_empty_archive(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not at"):
        produce_artifacts(tmp_path / "gone", tmp_path / "work", ["CONDA_PACK"], variables={})


class _FullDisk(io.RawIOBase):
    """An output whose disk fills up after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(data)


def test_a_full_disk_under_one_output_fails_the_pass(prefix: Path) -> None:
    """The outputs are compressed on threads of their own: an error there (no space) still
    ends the pass with that error, instead of being lost or leaving the pass waiting."""
    archive = TreeOptions(old_prefix=str(prefix), new_prefix=str(prefix))
    layer = TreeOptions(arcroot="opt/env", old_prefix=str(prefix), new_prefix="/opt/env")
    with pytest.raises(OSError, match="No space") as failed:
        write_trees(
            prefix,
            [TreeOutput(io.BytesIO(), archive, "gzip"), TreeOutput(_FullDisk(1000), layer, "zstd")],
        )
    assert failed.value.errno == errno.ENOSPC


def test_threaded_writer_keeps_order_and_hands_back_errors() -> None:
    out = io.BytesIO()
    with ThreadedWriter(out) as writer:
        for n in range(100):
            writer.write(b"%d," % n)
    assert out.getvalue() == b"".join(b"%d," % n for n in range(100))
    with pytest.raises(OSError, match="No space"), ThreadedWriter(_FullDisk(10)) as writer:
        writer.write(b"x" * 20)  # the error comes from the thread, at the latest on exit


def test_zstd_level_changes_the_layer_bytes_not_its_contents(prefix: Path, tmp_path: Path) -> None:
    """``oci_zstd_level`` trades CPU for bytes: the layer's blob differs, the tar inside it
    (its diff_id) does not, and each level gives the same bytes every time."""
    found = {}
    for level in (1, 3, 1):
        files = produce_artifacts(
            prefix, tmp_path / f"w{len(found)}{level}", ["DOCKER_MANIFEST"], variables={},
            zstd_level=level,
        )  # fmt: skip
        layer = next(f for f in files if f["media_type"] == ZSTD_LAYER_MEDIA_TYPE)
        config = next(f for f in files if f["media_type"] == CONFIG_MEDIA_TYPE)
        diff_ids = json.loads(Path(config["path"]).read_bytes())["rootfs"]["diff_ids"]
        assert found.setdefault(level, (layer["sha256"], diff_ids)) == (layer["sha256"], diff_ids)
    assert found[1][0] != found[3][0] and found[1][1] == found[3][1]


def test_zstd_level_is_part_of_the_pack_key(tmp_path: Path) -> None:
    """Builds packed at another level never reuse each other's blobs."""
    default = Settings(store_dir=tmp_path)
    faster = Settings(store_dir=tmp_path, oci_zstd_level=1)
    kinds = ["CONDA_PACK", "DOCKER_MANIFEST"]
    assert pack_key(default, "ab" * 32, kinds, {}) != pack_key(faster, "ab" * 32, kinds, {})
    with pytest.raises(ValidationError):
        Settings(store_dir=tmp_path, oci_zstd_level=0)
