"""Repodata kept in memory across the builds of one runner.

A rattler ``Gateway`` reads and parses a channel's repodata once and then answers from memory.
A new gateway per build, as the backend made before, read and parsed it again for every build
(a tenth of a small warm build's time in the runner). A warm runner now keeps one gateway per
repodata cache directory and HTTP client, and before each solve forgets what it holds of a
channel that may have changed since:

- a local channel (``file://``) when the ``repodata*`` files of a subdir differ in name, size
  or modification time from the ones it read (a stat per file, no read);
- every remote channel, always: its freshness is rattler's, from the HTTP cache headers kept
  with the on-disk cache, exactly as with a new gateway.

So a build never solves against repodata older than a new gateway would have read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import rattler

__all__ = ["gateway_for"]

# (name, size, mtime_ns) of each repodata file of one local subdir
Stamp = tuple[tuple[str, int, int], ...]

_MAX_GATEWAYS = 4


@dataclass
class _Kept:
    client: rattler.Client
    gateway: rattler.Gateway
    stamps: dict[tuple[str, str], Stamp] = field(default_factory=dict)


_KEPT: dict[str, _Kept] = {}


def gateway_for(
    cache_dir: Path, client: rattler.Client, channels: Sequence[str], subdirs: Sequence[str]
) -> rattler.Gateway:
    """This process's gateway for ``cache_dir`` and ``client``, with nothing in memory of
    ``channels`` that a new gateway would read differently (see the module docstring)."""
    kept = _KEPT.get(str(cache_dir))
    if kept is None or kept.client is not client:
        if len(_KEPT) >= _MAX_GATEWAYS:
            _KEPT.clear()
        kept = _Kept(client, rattler.Gateway(cache_dir=cache_dir, client=client))
        _KEPT[str(cache_dir)] = kept
    for channel in channels:
        local = _local_path(channel)
        if local is None:
            kept.gateway.clear_repodata_cache(channel)
            continue
        for subdir in subdirs:
            stamp = _stamp(local / subdir)
            if kept.stamps.get((channel, subdir)) != stamp:
                kept.gateway.clear_repodata_cache(channel, [rattler.Subdir(subdir)])
                kept.stamps[(channel, subdir)] = stamp
    return kept.gateway


def _local_path(channel: str) -> Path | None:
    parts = urlsplit(channel)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def _stamp(subdir: Path) -> Stamp:
    try:
        with os.scandir(subdir) as entries:
            found = [
                (entry.name, (info := entry.stat()).st_size, info.st_mtime_ns)
                for entry in entries
                if entry.name.startswith("repodata")
            ]
    except OSError:
        return ()
    return tuple(sorted(found))
