"""Reproducible tar streams of a prefix: the relocatable archive (CONDA_PACK) and image layers.

Entries are sorted, owned by uid/gid 0 with empty owner names, stamped with a fixed mtime and
written as regular files, directories and symlinks only (hardlinks into the package cache become
plain files), and the compressed stream carries no name or timestamp: the same prefix always gives the same bytes
(and so the same digest). Absolute symlinks into the prefix become relative ones; the files that
embed the build prefix are listed in ``.envstore/relocate.json`` for ``bin/conda-unpack``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import queue
import shlex
import stat
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Literal, Protocol, cast

import zstandard
from isal import igzip_threaded

from envstore.artifacts import relocate

__all__ = [
    "FIXED_MTIME",
    "ZSTD_LEVEL",
    "HashingWriter",
    "TarStream",
    "ThreadedWriter",
    "TreeOptions",
    "TreeOutput",
    "activate_script",
    "write_tree",
    "write_trees",
]

Compression = Literal["gzip", "zstd"]
FIXED_MTIME = 0
GZIP_LEVEL = 1  # fixed, so an archive's bytes stay the same from build to build
ZSTD_LEVEL = 3
_RELOCATE_SOURCE = Path(relocate.__file__).read_text()
_VAR_NAME = "".join(chr(c) for c in range(128) if chr(c).isalnum() or chr(c) == "_")

UNPACK_SCRIPT = """#!/bin/sh
# Rewrite the prefix this environment was built at into where it is now (conda-pack layout).
here=$(cd "$(dirname "$0")/.." && pwd -P)
if [ -x "$here/bin/python" ] && "$here/bin/python" -c "" 2>/dev/null; then
  exec "$here/bin/python" "$here/.envstore/relocate.py" "$here"
fi
for py in python3 python; do
  if command -v "$py" >/dev/null 2>&1; then exec "$py" "$here/.envstore/relocate.py" "$here"; fi
done
echo "conda-unpack: no Python interpreter found" >&2
exit 1
"""


def activate_script(variables: dict[str, str]) -> str:
    """``bin/activate``: ``. PREFIX/bin/activate PREFIX`` sets CONDA_PREFIX and PATH."""
    lines = [
        "# Source it: . <prefix>/bin/activate <prefix>   (conda-pack layout)",
        'if [ -n "${1:-}" ]; then _envstore_p=$(cd "$1" && pwd -P)',
        'else _envstore_p=$(cd "$(dirname "${BASH_SOURCE:-$0}")/.." && pwd -P); fi',
        'CONDA_PREFIX="$_envstore_p"; export CONDA_PREFIX',
        'CONDA_DEFAULT_ENV="$_envstore_p"; export CONDA_DEFAULT_ENV',
        'if [ -f "$_envstore_p/pyvenv.cfg" ]; then VIRTUAL_ENV="$_envstore_p"; export VIRTUAL_ENV; fi',
        'PATH="$_envstore_p/bin:$PATH"; export PATH',
    ]
    for name, value in sorted(variables.items()):
        if name and not name[0].isdigit() and all(c in _VAR_NAME for c in name):
            lines.append(f"{name}={shlex.quote(str(value))}; export {name}")
    lines += ["unset _envstore_p", ""]
    return "\n".join(lines)


class HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: _Writable | None, *, hashing: bool = True) -> None:
        self.target = target
        self.hasher = hashlib.sha256()
        self.hashing = hashing  # off: only counts (a digest nobody reads costs a full pass)
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.hashing:
            self.hasher.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return self.hasher.hexdigest()


@dataclass
class TreeOptions:
    """How to lay a prefix into a tar: under ``arcroot``, rewriting ``old`` to ``new``."""

    arcroot: str = ""  # "" for the archive, "opt/env" for an image layer
    old_prefix: str = ""
    new_prefix: str = ""  # equal to old_prefix: contents are kept as built
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class TreeOutput:
    """One compressed tar to write from a prefix: where, how laid out, how compressed."""

    out: BinaryIO
    options: TreeOptions
    compression: Compression = "gzip"
    tar_digest: bool = True  # an image layer needs it (its diff_id); an archive does not
    zstd_level: int = ZSTD_LEVEL  # fixed per server: the same prefix gives the same bytes


def write_tree(
    prefix: Path, out: BinaryIO, options: TreeOptions, compression: Compression = "gzip"
) -> tuple[str, str]:
    """Write the compressed tar of ``prefix`` to ``out``; return (tar digest, file digest)."""
    return write_trees(prefix, [TreeOutput(out, options, compression)])[0]


def write_trees(prefix: Path, outputs: list[TreeOutput]) -> list[tuple[str, str]]:
    """Write several tars of ``prefix`` from one read of it (the archive and the image layer
    of a build, say); return (tar digest or "" when not asked for, compressed digest) for each
    output, in order.

    Every output must rewrite from the same ``old_prefix``. Each output's tar stream is
    hashed and compressed in a thread of its own (:class:`ThreadedWriter`; hashlib, igzip and
    zstd release the GIL), so this thread only walks, reads and frames, and the two cores are
    kept busy by the compressors rather than waiting on it.
    """
    olds = {output.options.old_prefix for output in outputs}
    if len(olds) > 1:
        raise ValueError("every output of one pass must rewrite the same prefix")
    sinks: list[tuple[TarStream, HashingWriter, HashingWriter, TreeOptions]] = []
    with contextlib.ExitStack() as stack:
        for output in outputs:
            compressed = HashingWriter(output.out)
            zipped = stack.enter_context(
                _compressor(compressed, output.compression, output.zstd_level)
            )
            plain = HashingWriter(zipped, hashing=output.tar_digest)
            feeder = stack.enter_context(ThreadedWriter(plain))
            sinks.append((TarStream(feeder), plain, compressed, output.options))
        # the relocation manifest comes last: it lists what the entries were found to hold
        files = _write_entries([(tar, options) for tar, _, _, options in sinks], prefix)
        for tar, _, _, options in sinks:
            for name, data, mode in _extras(options, files):
                _add_bytes(tar, _arc(options, name), data, mode)
            tar.close()
    return [
        (plain.digest if plain.hashing else "", compressed.digest)
        for _, plain, compressed, _ in sinks
    ]


class ThreadedWriter:
    """Hands what is written to ``target`` on a thread of its own, in order.

    The tar of an output is hashed (an image layer's ``diff_id``) and compressed there, off
    the thread that walks and frames the prefix. The queue is bounded, so memory stays at a
    few chunks. An error of the target (a full disk, say) is raised by the next ``write`` or
    by the exit of the ``with`` block; after one, what is queued is dropped.
    """

    _DEPTH = 8
    _CHUNK = 1 << 20  # a big file is queued in slices of 1 MiB: the queue holds 8 MiB at most

    def __init__(self, target: _Writable) -> None:
        self.target = target
        self.error: BaseException | None = None
        self._queue: queue.Queue[bytes | memoryview] = queue.Queue(self._DEPTH)
        self._thread = threading.Thread(target=self._drain, name="tar-output", daemon=True)

    def __enter__(self) -> ThreadedWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._queue.put(b"")  # the end: write() never queues an empty chunk
        self._thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        if len(data) <= self._CHUNK:
            if data:
                self._queue.put(data)
            return len(data)
        # Queued whole, eight files of a CUDA environment (hundreds of MB each) would be in
        # memory at once; sliced, only the file being read and the one being written are.
        view = memoryview(data)
        for start in range(0, len(view), self._CHUNK):
            self._queue.put(view[start : start + self._CHUNK])
        return len(data)

    def _drain(self) -> None:
        while data := self._queue.get():
            if self.error is None:
                try:
                    self.target.write(data)
                except BaseException as exc:  # handed to the writing thread
                    self.error = exc


@contextlib.contextmanager
def _compressor(
    target: HashingWriter, compression: Compression, zstd_level: int = ZSTD_LEVEL
) -> Iterator[_Writable]:
    """A compressing writer into ``target`` that runs its work on other threads.

    gzip: ISA-L's igzip at level 1 (about four times zlib -6's speed for ~15 % more bytes; the
    conda-store CLI opens the archive with tarfile, so it stays gzip). zstd: level 3 unless
    the server says otherwise (``oci_zstd_level``), with a thread per core; both give the same bytes whatever the number of threads, so a layer's
    digest does not depend on the machine that wrote it.
    """
    if compression == "zstd":
        compressor = zstandard.ZstdCompressor(level=zstd_level, threads=-1)
        with compressor.stream_writer(cast(IO[bytes], target), closefd=False) as zwriter:
            yield zwriter
        return
    gzipped = igzip_threaded.open(  # type: ignore[no-untyped-call]
        target, "wb", compresslevel=GZIP_LEVEL, threads=-1
    )
    with gzipped as gwriter:
        yield gwriter


def _extras(options: TreeOptions, files: list[tuple[str, str]]) -> list[tuple[str, bytes, int]]:
    manifest = {"prefix": options.new_prefix, "files": [list(f) for f in files]}
    return [
        (".envstore", b"", 0o755 | stat.S_IFDIR),
        (".envstore/relocate.json", json.dumps(manifest, indent=1, sort_keys=True).encode(), 0o644),
        (".envstore/relocate.py", _RELOCATE_SOURCE.encode(), 0o644),
        ("bin/conda-unpack", UNPACK_SCRIPT.encode(), 0o755),
        ("bin/activate", activate_script(options.variables).encode(), 0o644),
    ]


_GENERATED = {".envstore", "bin/conda-unpack", "bin/activate"}


def _arc(options: TreeOptions, relative: str) -> str:
    return f"{options.arcroot}/{relative}" if options.arcroot else relative


def _write_entries(
    sinks: list[tuple[TarStream, TreeOptions]], prefix: Path
) -> list[tuple[str, str]]:
    """Add every entry of ``prefix`` to each tar; return the files that embed the prefix, with
    their mode (``text``/``binary``), found while each file is read for packing: one read per
    file, whatever the number of outputs."""
    for tar, options in sinks:
        _add_arcroot(tar, options)
    old_prefix = sinks[0][1].old_prefix if sinks else ""
    old = old_prefix.encode()
    news = [(tar, options, options.new_prefix.encode()) for tar, options in sinks]
    found: list[tuple[str, str]] = []
    root = os.fspath(prefix)
    for relative in _sorted_tree(root):
        if relative in _GENERATED or relative.startswith(".envstore/"):
            continue
        path = f"{root}/{relative}"  # strings, not Paths: this runs once per file
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(path)  # noqa: PTH115 (hot loop: strings)
            if target.startswith(old_prefix + "/"):
                inside = target[len(old_prefix) + 1 :]
                target = os.path.relpath(inside, posixpath.dirname(relative) or ".")
            for tar, options, _ in news:
                _add_link(tar, _arc(options, relative), target)
        elif stat.S_ISDIR(info.st_mode):
            mode = stat.S_IMODE(info.st_mode) | stat.S_IFDIR
            for tar, options, _ in news:
                _add_bytes(tar, _arc(options, relative), b"", mode)
        elif stat.S_ISREG(info.st_mode):
            kind = _add_file(news, path, relative, stat.S_IMODE(info.st_mode), old)
            if kind:
                found.append((relative, kind))
    return found


def _add_file(
    news: list[tuple[TarStream, TreeOptions, bytes]],
    path: str,
    relative: str,
    mode: int,
    old: bytes,
) -> str:
    """Read one file once and add it to every tar, rewritten where its prefix differs; return
    how it embeds the old prefix (``text``/``binary``), or "" when it does not."""
    with open(path, "rb") as handle:  # noqa: PTH123 (hot loop: strings)
        data = handle.read()
    kind = relocate.file_mode(data) if old and old in data else ""
    for tar, options, new in news:
        written = relocate.rewrite_bytes(data, old, new, kind) if kind and old != new else data
        _add_bytes(tar, _arc(options, relative), written, mode)
    return kind


def _add_arcroot(tar: TarStream, options: TreeOptions) -> None:
    parts = options.arcroot.split("/") if options.arcroot else []
    for depth in range(1, len(parts) + 1):
        _add_bytes(tar, "/".join(parts[:depth]), b"", 0o755 | stat.S_IFDIR)


def _sorted_tree(root: str) -> list[str]:
    found = []
    for directory, dirs, names in os.walk(root):
        base = os.path.relpath(directory, root)
        for name in dirs + names:
            found.append(name if base == "." else f"{base}/{name}")
    return sorted(found)


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class TarStream:
    """A write-only tar stream of plain entries, byte-identical to what ``tarfile`` writes in
    PAX format for them, about three times faster for a prefix of many small files.

    ``tarfile`` builds each header through a dictionary, a copy of the TarInfo and per-field
    encoders, and writes header, data and padding separately; the build's artifacts stage spent
    most of its time there. Small entries are gathered and written 1 MiB at a time; the
    contents of big files are handed on as they were read, without a copy.
    Entries a ustar header cannot hold (names over 100 bytes, non-ASCII names, sizes of 8 GiB
    and more) are still encoded by ``tarfile``, with their PAX extended header.
    """

    _FLUSH = 1 << 20
    _DIRECT = 1 << 16  # a file this big is written as it is, not copied into a chunk

    def __init__(self, out: _Writable) -> None:
        self.out = out
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.offset = 0

    def add(self, name: str, mode: int, kind: bytes, data: bytes = b"", link: str = "") -> None:
        """One entry: ``kind`` is ``tarfile.REGTYPE``, ``DIRTYPE`` or ``SYMTYPE``."""
        if kind == tarfile.DIRTYPE and not name.endswith("/"):
            name += "/"
        header = _ustar_header(name, mode, kind, len(data), link)
        if header is None:
            info = _info(name)
            info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
            header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self._put(header)
        if data:
            self._put(data)
            remainder = len(data) % tarfile.BLOCKSIZE
            if remainder:
                self._put(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))

    def close(self) -> None:
        """The end-of-archive blocks, padded to a whole record, as ``tarfile`` does."""
        self._put(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
        remainder = self.offset % tarfile.RECORDSIZE
        if remainder:
            self._put(tarfile.NUL * (tarfile.RECORDSIZE - remainder))
        self._flush()

    def _put(self, data: bytes) -> None:
        self.offset += len(data)
        if len(data) >= self._DIRECT:  # a big file goes straight through, never copied
            self._flush()
            self.out.write(data)
            return
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size >= self._FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.out.write(b"".join(self.pending))  # the one copy of a small entry
            self.pending.clear()
            self.pending_size = 0


_EMPTY_IDS = b"0000000\0" * 2  # uid, gid: 0
_ZERO_MTIME = b"%011o\0" % FIXED_MTIME
_AFTER_LINK = tarfile.POSIX_MAGIC + b"\0" * (32 + 32 + 8 + 8 + 155)  # magic, owners, devices


def _ustar_header(name: str, mode: int, kind: bytes, size: int, link: str) -> bytes | None:
    """The 512-byte header ``tarfile`` writes for a plain entry, or None when it needs PAX."""
    try:
        raw_name, raw_link = name.encode("ascii"), link.encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(raw_name) > 100 or len(raw_link) > 100 or size >= 8**11:
        return None
    block = b"".join(
        (
            raw_name.ljust(100, b"\0"),
            b"%07o\0" % (mode & 0o7777),
            _EMPTY_IDS,
            b"%011o\0" % size,
            _ZERO_MTIME,
            b"        ",
            kind,
            raw_link.ljust(100, b"\0"),
            _AFTER_LINK,
        )
    ).ljust(tarfile.BLOCKSIZE, b"\0")
    checksum = b"%06o\0" % sum(block)
    return block[:148] + checksum + block[155:]


def _info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: TarStream, name: str, data: bytes, mode: int) -> None:
    if stat.S_ISDIR(mode):
        tar.add(name, stat.S_IMODE(mode), tarfile.DIRTYPE)
    else:
        tar.add(name, stat.S_IMODE(mode), tarfile.REGTYPE, data)


def _add_link(tar: TarStream, name: str, target: str) -> None:
    tar.add(name, 0o777, tarfile.SYMTYPE, link=target)
