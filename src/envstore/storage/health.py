"""Whether the store can take writes: what ``/readyz`` asks besides the database.

A server whose store disk is full or read-only still answers reads, but every build and
upload would fail: a load balancer or an operator should see that before users do. The probe
writes and removes a small file in the store (which also finds a read-only mount and quota or
permission problems) and compares the free space with ``min_free`` bytes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["store_problem"]

_PROBE = b"\0" * 4096


def store_problem(store_dir: Path, min_free: int) -> str | None:
    """Why the store cannot take writes now, or None when it can."""
    try:
        stats = os.statvfs(store_dir)
        with tempfile.TemporaryFile(dir=store_dir, prefix=".readyz-") as probe:
            probe.write(_PROBE)
            probe.flush()
    except OSError as exc:
        return f"store {store_dir} is not writable: {exc.strerror or exc}"
    free = stats.f_bavail * stats.f_frsize
    if free < min_free:
        return f"store disk is full: {free} bytes free, ENVSTORE_READY_MIN_FREE_BYTES is {min_free}"
    return None
