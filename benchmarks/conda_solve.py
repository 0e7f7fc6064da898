"""Time solving on a generated 50,000-record channel (target: under one second).

Run: ``.venv/bin/python benchmarks/conda_solve.py [n_records]``. Prints the first solve (repodata
parse included, cache cold) and the best of three warm solves through envstore's backend, next to
a raw ``rattler.solve`` on the same gateway, and their ratio.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rattler

from envstore.backends.conda import solve_records
from envstore.testing.channels import large_channel

SPECS = ["pkg00000", "pkg00010", "pkg00100 >=1"]


def main() -> None:
    n_records = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = large_channel(root / "channel", n_records=n_records, seed=0)
        cache = str(root / "repodata")

        def envstore_solve() -> int:
            records = solve_records(
                [url],
                SPECS,
                "noarch",
                cache_dir=cache,
                as_of=None,
                timeout=60,
                virtual_packages=None,
                log=lambda _line: None,
            )
            return len(records)

        start = time.perf_counter()
        count = envstore_solve()
        cold = time.perf_counter() - start
        warm = min(_timed(envstore_solve) for _ in range(3))

        async def raw() -> int:
            gateway = rattler.Gateway(cache_dir=root / "raw-cache")
            return len(await rattler.solve([url], SPECS, gateway=gateway, platforms=["noarch"]))

        raw_time = min(_timed(lambda: asyncio.run(raw())) for _ in range(3))
    print(f"channel: {n_records} records; solution: {count} packages")
    print(f"envstore solve, first:       {cold:.3f}s")
    print(
        f"envstore solve, best of 3:   {warm:.3f}s  (target < 1s: {'ok' if warm < 1 else 'MISSED'})"
    )
    print(f"raw rattler.solve, best of 3: {raw_time:.3f}s  ratio {warm / raw_time:.2f}")


def _timed(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
