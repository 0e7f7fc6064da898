"""RELIABILITY.md W1, W5, W7, W8, W9 against a real ``envstore serve``.

Builds are real uv builds against a local simple index on loopback (tests/support/local_index)
whose downloads can be made slow, so a build can be caught while it is BUILDING.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local_index import LocalIndex
from tests.support.server import ServerProcess, processes_mentioning

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _server(tmp_path: Path, index: LocalIndex, **env: str) -> ServerProcess:
    settings = {"ENVSTORE_PYPI_INDEX_URL": index.url, "ENVSTORE_WORKERS": "2", **env}
    return ServerProcess(tmp_path / "store", env=settings)


@pytest.fixture
def server(tmp_path: Path, index: LocalIndex) -> Iterator[ServerProcess]:
    process = _server(tmp_path, index).start()
    yield process
    process.stop()


def _work(server: ServerProcess, build_id: int, attempt: int = 1) -> str:
    """The work directory of one attempt *of this server's store*: other tests running beside
    this one (pytest-xdist) have builds with the same ids, whose processes must not match."""
    return f"{server.store}/work/{build_id}-{attempt}"


def _prefix(server: ServerProcess, build: dict[str, object]) -> Path:
    return server.store / "builds" / "default" / str(build["build_key"])


def test_W8_cancel_while_building(server: ServerProcess, index: LocalIndex) -> None:
    index.delay = 120
    build_id = server.submit("w8pkg==1.0\n", name="w8")
    build = server.wait_for(build_id, {"BUILDING"}, timeout=30)
    # the runner works in the build's work directory once it has taken the request (on a
    # loaded machine that can be seconds after BUILDING): wait for it, then cancel
    deadline = time.monotonic() + 30
    while not (
        processes_mentioning(str(build["build_key"]))
        or processes_mentioning(_work(server, build_id))
    ):
        assert time.monotonic() < deadline, "no process of the build appeared"
        time.sleep(0.1)
    started = time.monotonic()
    response = server.api("PUT", f"/build/{build_id}/cancel/")
    assert response.status_code == 200
    done = server.wait_for(build_id, {"CANCELED", "FAILED", "COMPLETED"}, timeout=10)
    assert done["status"] == "CANCELED"
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    assert processes_mentioning(str(build["build_key"])) == []
    assert processes_mentioning(_work(server, build_id)) == []
    assert not _prefix(server, build).exists()
    again = server.api("PUT", f"/build/{build_id}/cancel/")
    assert again.status_code == 409 and "CANCELED" in again.json()["message"]
    assert "canceled" in server.api("GET", f"/build/{build_id}/logs/").text


def test_W7_hanging_solve_fails_with_solve_timeout(tmp_path: Path, index: LocalIndex) -> None:
    server = _server(tmp_path, index, ENVSTORE_SOLVE_TIMEOUT="3").start()
    try:
        index.delay = 120
        build_id = server.submit("w7pkg==1.0\n", name="w7")
        server.wait_for(build_id, {"BUILDING"}, timeout=30)
        started = time.monotonic()
        done = server.wait_for(build_id, {"FAILED", "COMPLETED", "CANCELED"}, timeout=30)
        assert done["status"] == "FAILED"
        assert done["status_info"].startswith("solve_timeout")
        assert time.monotonic() - started < 3 + 10
        time.sleep(0.5)
        assert processes_mentioning(str(done["build_key"])) == []
    finally:
        server.stop()


def test_W1_kill9_midbuild(tmp_path: Path, index: LocalIndex) -> None:
    server = _server(tmp_path, index).start()
    first = server.submit("w1pkg==1.0\n", name="w1")
    good = server.wait_for(first, {"COMPLETED"}, timeout=60)
    index.delay = 120
    second = server.submit("w1pkg==2.0\n", name="w1")
    building = server.wait_for(second, {"BUILDING"}, timeout=30)
    time.sleep(0.5)
    server.kill9()
    time.sleep(1.5)  # the orphaned runner notices its parent is gone and kills its group
    assert processes_mentioning(str(building["build_key"])) == []
    link = server.store / "envs" / "default" / "w1"
    assert link.resolve().name == good["build_key"]  # current environment unchanged

    index.delay = 0
    restarted = ServerProcess(server.store, env=server.env, port=server.port).start()
    try:
        started = time.monotonic()
        done = restarted.wait_for(second, {"COMPLETED", "FAILED"}, timeout=60)
        assert time.monotonic() - started < 60
        assert done["status"] == "COMPLETED" and done["attempt"] == 2
        types = sorted(a["artifact_type"] for a in done["build_artifacts"])
        assert types == sorted(set(types))  # one artifact set, none left by the dead attempt
        assert link.resolve().name == done["build_key"]
        log = restarted.api("GET", f"/build/{second}/logs/").text
        assert "attempt 1" in log and "attempt 2" in log
        assert {p.name for p in (server.store / "envs" / "default").iterdir()} == {"w1"}
        leftovers = {p.name for p in (server.store / "builds" / "default").iterdir()}
        assert leftovers == {good["build_key"], done["build_key"]}
        assert not any((server.store / "work").glob(f"{second}-*"))
    finally:
        restarted.stop()


def test_W5_build_killed_every_time_fails_after_two_attempts(
    server: ServerProcess, index: LocalIndex
) -> None:
    index.delay = 120
    doomed = server.submit("w5pkg==1.0\n", name="w5")
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(killed) < 2:
            build = server.build(doomed)
            if build["status"] == "BUILDING" and build["attempt"] not in killed:
                pids = processes_mentioning(_work(server, doomed, int(build["attempt"])))
                for pid in pids:
                    # what the OOM killer does; a child may be gone with its parent already
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if pids:
                    killed.append(build["attempt"])
            time.sleep(0.1)

    thread = threading.Thread(target=killer)
    thread.start()
    thread.join(timeout=90)
    done = server.wait_for(doomed, {"FAILED", "COMPLETED"}, timeout=30)
    assert killed == [1, 2]
    assert done["status"] == "FAILED" and done["attempt"] == 2
    assert (
        done["status_info"].startswith("worker_lost") and "after 2 attempts" in done["status_info"]
    )
    index.delay = 0  # other builds are unaffected
    other = server.submit("w5other==1.0\n", name="w5b")
    assert server.wait_for(other, {"COMPLETED", "FAILED"}, timeout=60)["status"] == "COMPLETED"


def test_W9_many_builds_never_more_than_n_at_once(tmp_path: Path, index: LocalIndex) -> None:
    workers = 3
    server = _server(tmp_path, index, ENVSTORE_WORKERS=str(workers)).start()
    try:
        ids = [server.submit("w9pkg==1.0\n", name=f"w9-{n}") for n in range(100)]
        most = 0
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            page = server.api("GET", "/build/", params={"status": "BUILDING"}).json()
            most = max(most, page["count"])
            left = server.api("GET", "/build/", params={"status": "QUEUED"}).json()["count"]
            if left == 0 and page["count"] == 0:
                break
            time.sleep(0.05)
        assert most <= workers
        builds = [server.build(i) for i in ids]
        failed = {b["id"]: b["status_info"] for b in builds if b["status"] != "COMPLETED"}
        assert failed == {}
    finally:
        server.stop()


def test_W3_sigterm_requeues_a_long_build_without_losing_it(
    tmp_path: Path, index: LocalIndex
) -> None:
    server = _server(tmp_path, index, ENVSTORE_SHUTDOWN_GRACE="2").start()
    index.delay = 120
    build_id = server.submit("w3pkg==1.0\n", name="w3")
    server.wait_for(build_id, {"BUILDING"}, timeout=30)
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    assert time.monotonic() - started < 2 + 10
    index.delay = 0
    restarted = ServerProcess(server.store, env=server.env, port=server.port).start()
    try:
        done = restarted.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=60)
        assert done["status"] == "COMPLETED"
        assert done["attempt"] == 1  # the interrupted attempt does not count against the build
        assert "interrupted" in restarted.api("GET", f"/build/{build_id}/logs/").text
    finally:
        restarted.stop()


def test_W3_sigterm_lets_a_short_build_finish(tmp_path: Path, index: LocalIndex) -> None:
    server = _server(tmp_path, index, ENVSTORE_SHUTDOWN_GRACE="30").start()
    index.delay = 2
    build_id = server.submit("w3short==1.0\n", name="w3s")
    server.wait_for(build_id, {"BUILDING"}, timeout=30)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)
    restarted = ServerProcess(server.store, env=server.env, port=server.port).start()
    try:
        done = restarted.build(build_id)
        assert done["status"] == "COMPLETED" and done["attempt"] == 1
        log = restarted.api("GET", f"/build/{build_id}/logs/").text
        assert log.count("COMPLETED") == 1  # completed once, not again after the restart
    finally:
        restarted.stop()
