"""``envstore serve --api-processes N`` (issue 11): more API processes on the one port, build
workers in the first process only, and no API process outliving the server (even kill -9)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _helpers(pid: int) -> list[int]:
    return [
        child
        for child in _children(pid)
        if b"envstore.cli.server" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_api_processes_share_the_port_and_leave_with_the_server(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "store", env={"ENVSTORE_API_PROCESSES": "2"}).start()
    try:
        assert server.process is not None
        main = server.process.pid
        deadline = time.monotonic() + 120
        while not _helpers(main) and time.monotonic() < deadline:
            time.sleep(0.2)
        (helper,) = _helpers(main)
        environ = Path(f"/proc/{helper}/environ").read_bytes().split(b"\0")
        assert b"ENVSTORE_WORKERS=0" in environ  # the workers stay in the first process
        for _ in range(20):
            assert httpx.get(f"{server.url}/api/v1/", timeout=30).status_code == 200
        # serving, without the runner's native library (issue 11)
        assert b"rattler" not in Path(f"/proc/{helper}/maps").read_bytes()
        os.kill(main, signal.SIGKILL)  # the server alone, not its process group
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 60
        while _alive(helper) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(helper)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/api/v1/", timeout=5)
    finally:
        server.stop()
