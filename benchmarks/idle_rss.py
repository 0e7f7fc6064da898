"""Memory of a running ``envstore serve`` (issue 11: idle RSS under 150 MB, all processes).

Starts ``envstore serve`` of a checkout on a store, then prints the summed RSS and PSS of every
process of its tree (``/proc``): after start-up, after some idle seconds, and after a burst of
reads (16 threads on the read routes of ``api_reads.py``). RSS counts a shared library once per
process that maps it, PSS divides it among them; the target is written for RSS.

    cd WORKTREE && .venv/bin/python benchmarks/seed_reads.py STORE      # once per store
    .venv/bin/python benchmarks/idle_rss.py STORE --port 18471 [--api-processes 2]

Run it with the Python of the checkout whose server is measured (it starts ``envstore`` from
the same ``bin`` directory).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

_READS = ("environment/", "build/", "environment/ns3/env4/", "build/100/", "build/100/packages/")


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            todo += [int(child) for child in (task / "children").read_text().split()]
    return found


def memory(root: int) -> str:
    rss = pss = 0
    parts = []
    for pid in tree(root):
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        )
        kb_rss, kb_pss = int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])
        rss, pss = rss + kb_rss, pss + kb_pss
        parts.append(f"{kb_rss // 1024}")
    return f"RSS {rss / 1024:.0f} MB ({' + '.join(parts)}), PSS {pss / 1024:.0f} MB"


def settle(root: int, timeout: float = 60.0) -> None:
    """Wait until the tree's RSS has not changed by 1 MB over 2 s (imports done)."""
    last, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            now = sum(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) for pid in tree(root))
        except FileNotFoundError:  # a process came or went
            now = -1
        if last is not None and now >= 0 and abs(now - last) * os.sysconf("SC_PAGE_SIZE") < 1 << 20:
            return
        last = now
        time.sleep(2)


def burst(url: str, token: str, seconds: float, threads: int = 16) -> int:
    done = [0] * threads
    headers = {"Authorization": f"Bearer {token}"}
    end = time.monotonic() + seconds

    def reader(slot: int) -> None:
        with httpx.Client(base_url=f"{url}/api/v1/", headers=headers, timeout=30) as client:
            while time.monotonic() < end:
                client.get(_READS[done[slot] % len(_READS)]).raise_for_status()
                done[slot] += 1

    workers = [threading.Thread(target=reader, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--port", type=int, default=18471)
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds before 2nd figure")
    parser.add_argument("--reads", type=float, default=15.0, help="seconds of reads (0: none)")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    command = [str(Path(sys.executable).parent / "envstore"), "serve", "--port", str(args.port)]
    command += ["--api-processes", str(args.api_processes)]
    env = {**os.environ, "ENVSTORE_STORE_DIR": str(args.store)}
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        settle(server.pid)  # the extra API processes finish their imports
        print(f"after start:      {memory(server.pid)}", flush=True)
        time.sleep(args.idle)
        print(f"after {args.idle:.0f} s idle:  {memory(server.pid)}", flush=True)
        if args.reads:
            count = burst(url, (args.store / "token").read_text().strip(), args.reads)
            print(f"after {count} reads: {memory(server.pid)}", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
