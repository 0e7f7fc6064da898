"""Server CPU of a web UI page against the API reads that fetch the same data.

The same store as ``api_reads.py`` (namespaces x environments x builds, 20 packages per build).
For each page, N sequential requests, server CPU from /proc before and after, per request; then
the same for the API request(s) a client would make to show the same thing. Goal: a page costs
about what the API reads behind it cost (ratio near 1; rendering HTML instead of JSON).

    python benchmarks/ui_pages.py [--namespaces 20] [--envs 10] [--builds 3] [--requests 200]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_reads import cpu_seconds, populate
from tests.support.server import ServerProcess


def cost(client: httpx.Client, pid: int, paths: list[str], requests: int) -> tuple[float, float]:
    """Server CPU and wall milliseconds for one round of ``paths`` (warm)."""
    for _ in range(10):
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text[:200])
    before, wall = cpu_seconds(pid), time.perf_counter()
    for _ in range(requests):
        for path in paths:
            client.get(path)
    wall = time.perf_counter() - wall
    return (cpu_seconds(pid) - before) / requests * 1000, wall / requests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--envs", type=int, default=10)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="envstore-bench-ui-"))
    try:
        store = root / "store"
        populate(store, args.namespaces, args.envs, args.builds)
        total = args.namespaces * args.envs * args.builds
        server = ServerProcess(store, env={"ENVSTORE_WORKERS": "0"}).start()
        assert server.process is not None
        pid = server.process.pid
        build = total // 2
        api = "/api/v1"
        pairs = {
            "environments, page of 50": (
                ["/ui/"],
                [f"{api}/environment/?size=50"],
            ),
            "one environment (20 packages, 3 builds)": (
                ["/ui/env/ns3/env4/"],
                [
                    f"{api}/environment/ns3/env4/",
                    f"{api}/build/?name=env4&namespace=ns3",
                    f"{api}/build/{build}/packages/",
                ],
            ),
            "one build with its log": (
                [f"/ui/build/{build}/"],
                [f"{api}/build/{build}/", f"{api}/build/{build}/logs/"],
            ),
        }
        print(f"{total} builds; {args.requests} rounds per row; server CPU per round")
        print(f"{'page':42s} {'UI page':>10s} {'API reads':>10s} {'ratio':>6s}")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for label, (page, reads) in pairs.items():
                ui_cpu, _ = cost(client, pid, page, args.requests)
                api_cpu, _ = cost(client, pid, reads, args.requests)
                print(
                    f"{label:42s} {ui_cpu:7.2f} ms {api_cpu:7.2f} ms {ui_cpu / api_cpu:6.2f}"
                    f"  ({len(reads)} API request{'s' if len(reads) > 1 else ''})"
                )
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
