"""Memory an API process keeps after a burst of reads (issue 11: idle RSS under 150 MB).

Each thread of the routes' pool would get a malloc arena of its own from glibc (up to 8 per
core), each keeping freed memory mapped; an API process limits itself to two arenas. An arena
other than the main one is a 64 MiB-aligned reservation of 64 MiB, of which the part in use is
readable: that is what ``/proc/PID/maps`` is searched for.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

_HEAP = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit


def _malloc_heaps(pid: int) -> int:
    """The glibc arenas of ``pid`` besides the main one (its heaps, one each when small)."""
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        low, high = (int(end, 16) for end in fields[0].split("-"))
        regions.append((low, high, fields[1], len(fields) > 5))  # named: a file or [stack]
    ends = {low: (high, perms, named) for low, high, perms, named in regions}
    heaps = 0
    for low, high, perms, named in regions:
        if named or low % _HEAP or not perms.startswith("rw"):
            continue
        end = high
        if end in ends and not ends[end][2] and ends[end][1].startswith("---"):
            end = ends[end][0]  # the reserved, not yet used rest of the heap
        heaps += end - low == _HEAP
    return heaps


def test_api_process_threads_share_two_malloc_arenas(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "store")
    server.env.pop("MALLOC_ARENA_MAX", None)  # an operator's setting would be kept
    server.start()
    try:
        assert server.process is not None

        def reads(_: int) -> None:
            with httpx.Client(base_url=f"{server.url}/api/v1/", timeout=30) as client:
                for _ in range(40):
                    assert client.get("namespace/").status_code == 200

        with ThreadPoolExecutor(16) as pool:  # 16 callers: the route threads multiply
            list(pool.map(reads, range(16)))
        threads = len(list(Path(f"/proc/{server.process.pid}/task").iterdir()))
        assert threads > 8  # else the check below proves nothing
        assert _malloc_heaps(server.process.pid) <= 1
    finally:
        server.stop()
