"""``TarStream`` writes exactly the bytes ``tarfile`` would, so archive and image digests do
not depend on which of the two wrote them (reproducibility across envstore versions)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from envstore.artifacts.tarball import (
    FIXED_MTIME,
    Compression,
    TarStream,
    ThreadedWriter,
    TreeOptions,
    write_tree,
)

ENTRIES = [
    ("bin", 0o755, tarfile.DIRTYPE, b"", ""),
    ("bin/python", 0o755, tarfile.REGTYPE, b'#!/bin/sh\nexec python3 "$@"\n', ""),
    ("lib/empty", 0o644, tarfile.REGTYPE, b"", ""),
    ("lib/one-block", 0o644, tarfile.REGTYPE, b"a" * 512, ""),
    ("lib/" + "n" * 96, 0o600, tarfile.REGTYPE, b"exactly 100 bytes of name", ""),
    ("lib/" + "x" * 120, 0o644, tarfile.REGTYPE, b"a name ustar cannot hold", ""),
    ("lib/ünïcode.txt", 0o644, tarfile.REGTYPE, b"u", ""),
    ("lib/link", 0o777, tarfile.SYMTYPE, b"", "../bin/python"),
    ("lib/far-link", 0o777, tarfile.SYMTYPE, b"", "../" * 40 + "target"),
    ("share/binary", 0o644, tarfile.REGTYPE, bytes(range(256)) * 7, ""),
]


def _with_tarfile(entries: list[tuple[str, int, bytes, bytes, str]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode, kind, data, link in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
            info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def _with_stream(entries: list[tuple[str, int, bytes, bytes, str]]) -> bytes:
    out = io.BytesIO()
    tar = TarStream(out)
    for name, mode, kind, data, link in entries:
        tar.add(name, mode, kind, data, link)
    tar.close()
    return out.getvalue()


@pytest.mark.parametrize("count", [0, 1, len(ENTRIES)])
def test_tar_stream_matches_tarfile_byte_for_byte(count: int) -> None:
    entries = ENTRIES[:count]
    assert _with_stream(entries) == _with_tarfile(entries)


def test_tar_stream_output_reads_back() -> None:
    with tarfile.open(fileobj=io.BytesIO(_with_stream(ENTRIES))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["lib/" + "x" * 120].size == len(b"a name ustar cannot hold")
        assert members["lib/link"].linkname == "../bin/python"
        extracted = tar.extractfile("share/binary")
        assert extracted is not None and extracted.read() == bytes(range(256)) * 7


def test_a_large_stream_is_written_in_chunks() -> None:
    """Entries past the 1 MiB buffer reach the output before close, in order."""
    big = [(f"f{n:03d}", 0o644, tarfile.REGTYPE, bytes([n % 256]) * 5000, "") for n in range(400)]
    assert _with_stream(big) == _with_tarfile(big)


class _Recorder:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)


def test_a_big_write_is_queued_in_slices_of_one_mib() -> None:
    """A whole big file queued as one chunk let eight of them sit in memory at once."""
    big = bytes(range(256)) * (5 * 4096 + 7)  # 5 MiB and a bit
    target = _Recorder()
    with ThreadedWriter(target) as writer:
        writer.write(b"head")
        writer.write(big)
        writer.write(b"tail")
    assert b"".join(target.chunks) == b"head" + big + b"tail"
    assert max(len(chunk) for chunk in target.chunks) == 1 << 20


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_prefix_with_a_big_file_reads_back_from_either_compression(
    tmp_path: Path, compression: Compression
) -> None:
    (tmp_path / "lib").mkdir()
    big = os.urandom(3 << 20)
    (tmp_path / "lib" / "big.so").write_bytes(big)
    (tmp_path / "small.txt").write_text("x")
    out = io.BytesIO()
    write_tree(tmp_path, out, TreeOptions(), compression)
    raw = out.getvalue()
    plain = (
        zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        if compression == "zstd"
        else gzip.decompress(raw)
    )
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        member = tar.extractfile("lib/big.so")
        assert member is not None and member.read() == big
