"""Move an unpacked environment to where it now lives: the logic behind ``bin/conda-unpack``.

This file is copied verbatim into every archive and image layer as ``.envstore/relocate.py``
and run by the environment's (or the host's) Python, so it imports nothing but the standard
library. ``.envstore/relocate.json`` names the prefix the files currently embed and the files
that embed it; each is rewritten to the new prefix, as conda-pack does: text files by plain
replacement, binary files by replacing the NUL-terminated string and padding with NULs (the new
prefix must not be longer). The manifest is then updated, so unpacking again after another
move works. Paths outside the prefix are never written.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

__all__ = ["MANIFEST", "file_mode", "relocate", "rewrite_bytes"]

MANIFEST = ".envstore/relocate.json"


def rewrite_bytes(data: bytes, old: bytes, new: bytes, mode: str) -> bytes:
    """``data`` with every occurrence of the prefix ``old`` replaced by ``new``."""
    if mode == "text":
        return data.replace(old, new)
    if len(new) > len(old):
        raise ValueError(f"cannot move a binary file to a longer prefix ({new!r})")
    padding = b"\0" * (len(old) - len(new))

    def pad(match: re.Match[bytes]) -> bytes:
        return new + match.group(1) + padding + b"\0"

    return re.sub(re.escape(old) + b"([^\0]*?)\0", pad, data)


def file_mode(data: bytes) -> str:
    """How a file embedding the prefix is rewritten: ``binary`` (NUL-padded) or ``text``."""
    return "binary" if b"\0" in data else "text"


def relocate(root: Path) -> int:
    """Rewrite the files listed in the manifest from their recorded prefix to ``root``."""
    root = root.resolve()
    manifest_path = root / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    old, new = str(manifest["prefix"]), str(root)
    if old == new:
        return 0
    changed = 0
    for relative, mode in manifest["files"]:
        path = (root / relative).resolve()
        if root not in path.parents or path.is_symlink() or not path.is_file():
            continue  # never follow a manifest entry out of the environment
        data = path.read_bytes()
        updated = rewrite_bytes(data, old.encode(), new.encode(), mode)
        if updated != data:
            permissions = path.stat().st_mode
            path.write_bytes(updated)
            path.chmod(permissions)
            changed += 1
    manifest["prefix"] = new
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return changed


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    changed = relocate(root)
    print(f"conda-unpack: {changed} file(s) moved to {root.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
