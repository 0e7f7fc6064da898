"""The workers' build processes: kept warm across builds, replaced whenever they cannot be
trusted or are not needed (jobs/runners.py), against a real ``envstore serve``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.local_index import LocalIndex
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RUNNER = re.compile(r"runner pid (\d+) \(its build (\d+)\)")


def _server(tmp_path: Path, index: LocalIndex, **env: str) -> ServerProcess:
    settings = {"ENVSTORE_PYPI_INDEX_URL": index.url, "ENVSTORE_WORKERS": "1", **env}
    return ServerProcess(tmp_path / "store", env=settings)


def _runner_of(server: ServerProcess, build_id: int) -> tuple[int, int]:
    """(pid, how many builds that runner had run with this one) from the build's log."""
    match = RUNNER.search(server.api("GET", f"/build/{build_id}/logs/").text)
    assert match, f"build {build_id} logs no runner"
    return int(match[1]), int(match[2])


def _build(server: ServerProcess, requirement: str, name: str) -> int:
    build_id = server.submit(f"{requirement}\n", name=name)
    assert server.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=60)["status"] == "COMPLETED"
    return build_id


def _runner_children(server: ServerProcess) -> list[int]:
    """Live runner processes whose parent is the server."""
    assert server.process is not None
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        ours = fields[0] != "Z" and int(fields[1]) == server.process.pid
        if ours and b"envstore.pipeline.runner" in cmdline:
            found.append(int(entry.name))
    return found


def test_one_runner_serves_consecutive_builds_and_a_cancel_replaces_it(
    tmp_path: Path, index: LocalIndex
) -> None:
    server = _server(tmp_path, index).start()
    try:
        first = _runner_of(server, _build(server, "rapkg==1.0", "ra"))
        second = _runner_of(server, _build(server, "rapkg==2.0", "ra"))
        assert second == (first[0], first[1] + 1)  # the same process, one build further

        index.delay = 120
        doomed = server.submit("rbpkg==1.0\n", name="rb")
        server.wait_for(doomed, {"BUILDING"}, timeout=30)
        time.sleep(0.5)
        assert server.api("PUT", f"/build/{doomed}/cancel/").status_code == 200
        assert server.wait_for(doomed, {"CANCELED"}, timeout=15)["status"] == "CANCELED"
        index.delay = 0
        after = _runner_of(server, _build(server, "rcpkg==1.0", "rc"))
        assert after[0] != first[0]  # the killed runner is not reused...
        assert after[1] == 1
        assert first[0] not in _runner_children(server)  # ...and is gone
    finally:
        server.stop()


def test_a_runner_is_replaced_after_runner_max_builds(tmp_path: Path, index: LocalIndex) -> None:
    server = _server(tmp_path, index, ENVSTORE_RUNNER_MAX_BUILDS="2").start()
    try:
        runs = [_runner_of(server, _build(server, f"rmpkg=={v}", "rm")) for v in ("1.0", "2.0")]
        third = _runner_of(server, _build(server, "rnpkg==1.0", "rn"))
        assert [count for _pid, count in runs] == [1, 2]
        assert runs[0][0] == runs[1][0] != third[0] and third[1] == 1
    finally:
        server.stop()


def test_an_idle_runner_exits_and_the_next_build_starts_another(
    tmp_path: Path, index: LocalIndex
) -> None:
    server = _server(tmp_path, index, ENVSTORE_RUNNER_IDLE_SECONDS="1").start()
    try:
        assert _runner_children(server) == []  # none before the first build
        pid, _ = _runner_of(server, _build(server, "ripkg==1.0", "ri"))
        deadline = time.monotonic() + 15  # the worker looks every 2 s when it has no build
        while _runner_children(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _runner_children(server) == []  # an idle server holds no build process
        again, count = _runner_of(server, _build(server, "ripkg==2.0", "ri"))
        assert again != pid and count == 1
    finally:
        server.stop()


def test_runner_idle_seconds_zero_runs_one_process_per_build(
    tmp_path: Path, index: LocalIndex
) -> None:
    server = _server(tmp_path, index, ENVSTORE_RUNNER_IDLE_SECONDS="0").start()
    try:
        assert _runner_children(server) == []  # none is started ahead of a build
        builds = [_build(server, f"rzpkg=={v}", "rz") for v in ("1.0", "2.0")]
        runs = [_runner_of(server, build_id) for build_id in builds]
        assert runs[0][0] != runs[1][0] and runs[0][1] == runs[1][1] == 1
        for build_id in builds:  # packing after COMPLETED runs in a runner of its own too
            archive = server.api("GET", f"/build/{build_id}/archive/", params={"wait": 120})
            assert archive.status_code == 200
        time.sleep(0.5)
        assert _runner_children(server) == []
    finally:
        server.stop()
