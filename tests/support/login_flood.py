"""Authenticated read latency while anonymous connections flood ``POST /login/`` (A10).

Used by ``tests/security/test_A10_login_throttling.py`` (a generous bound that only catches
starvation) and ``benchmarks/login_flood.py`` (the figures).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.server import ENVSTORE, ServerProcess


@dataclass(frozen=True)
class FloodResult:
    reads: int
    p50: float
    p99: float
    worst: float
    logins: int
    statuses: dict[int, int]

    def summary(self) -> str:
        return (
            f"{self.reads} reads: p50 {self.p50 * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms, "
            f"max {self.worst * 1000:.0f} ms; {self.logins} login attempts {self.statuses}"
        )


@contextmanager
def signed_in_server(store: Path, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """``envstore serve`` (no build workers) on ``store`` with ``alice`` signed in and an
    environment ``default/tools`` to read: yields (server URL, alice's login cookie)."""
    server = ServerProcess(store, env={"ENVSTORE_WORKERS": "0", **env})
    subprocess.run(
        [ENVSTORE, "user", "add", "alice", "--password-stdin"],
        input="password-alice\n",
        text=True,
        check=True,
        env=server.env,
        capture_output=True,
    )
    server.start()
    try:
        server.submit("six==1.16.0\n", name="tools")
        login = httpx.post(
            f"{server.url}/login/", json={"username": "alice", "password": "password-alice"}
        )
        yield server.url, login.cookies["conda-store-auth"]
    finally:
        server.stop()


def _flood(url: str, stop: threading.Event, counts: dict[int, int], lock: threading.Lock) -> None:
    with httpx.Client(timeout=60) as client:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status = client.post(
                    f"{url}/login/",
                    json={"username": f"nobody{n % 97}", "password": "wrong-password"},
                ).status_code
            except httpx.TransportError:
                status = 0
            with lock:
                counts[status] = counts.get(status, 0) + 1


def measure(url: str, cookie: str, *, connections: int, seconds: float) -> FloodResult:
    """Sequential cookie-authenticated reads for ``seconds`` while ``connections`` threads
    post wrong passwords (0: no flood, the baseline)."""
    stop, lock = threading.Event(), threading.Lock()
    counts: dict[int, int] = {}
    threads = [
        threading.Thread(target=_flood, args=(url, stop, counts, lock), daemon=True)
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    if connections:
        time.sleep(1.0)  # let the flood fill every queue first
    latencies: list[float] = []
    with httpx.Client(timeout=60, cookies={"conda-store-auth": cookie}) as reader:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            answer = reader.get(f"{url}/api/v1/environment/default/tools/")
            latencies.append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
            time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    ordered = sorted(latencies)
    return FloodResult(
        reads=len(ordered),
        p50=statistics.median(ordered),
        p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        worst=ordered[-1],
        logins=sum(counts.values()),
        statuses=dict(sorted(counts.items())),
    )
