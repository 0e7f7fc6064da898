"""RELIABILITY.md W11: 150 submits from 20 threads, then a cancel of each from 20 threads.

Every build ends in exactly one terminal state within 60 s, none stays BUILDING, and a canceled
build is never queued again, even across a restart. The narrow window the load exposed (a
cancel arriving after the build process succeeded, before the worker published) is also forced
deterministically in tests/integration/test_worker_services.py.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.local_index import LocalIndex
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TERMINAL = {"COMPLETED", "FAILED", "CANCELED"}


def _statuses(server: ServerProcess, ids: list[int]) -> dict[int, dict[str, object]]:
    builds: dict[int, dict[str, object]] = {}
    page = 1
    while len(builds) < len(ids):
        data = server.api("GET", "/build/", params={"page": page, "size": 100}).json()["data"]
        if not data:
            break
        builds.update({int(b["id"]): b for b in data})
        page += 1
    return {i: builds[i] for i in ids}


def test_W11_cancel_under_load_leaves_no_build_building(tmp_path: Path, index: LocalIndex) -> None:
    env = {"ENVSTORE_PYPI_INDEX_URL": index.url, "ENVSTORE_WORKERS": "2"}
    server = ServerProcess(tmp_path / "store", env=env).start()
    try:
        with ThreadPoolExecutor(20) as pool:
            ids = list(
                pool.map(
                    lambda n: server.submit(f"w11pkg{n % 5}==1.0\n", name=f"w11-{n}"), range(150)
                )
            )
            assert len(set(ids)) == 150
            answers = list(pool.map(lambda i: server.api("PUT", f"/build/{i}/cancel/"), ids))
        # a build may have finished before its cancel arrived: then the cancel is a 409
        assert {a.status_code for a in answers} <= {200, 409}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            builds = _statuses(server, ids)
            if all(b["status"] in TERMINAL for b in builds.values()):
                break
            time.sleep(0.5)
        stuck = {i: b["status"] for i, b in builds.items() if b["status"] not in TERMINAL}
        assert stuck == {}
        canceled = {i for i, b in builds.items() if b["status"] == "CANCELED"}
        assert len(canceled) >= 100  # most were still queued when their cancel came
        for answer, build_id in zip(answers, ids, strict=True):
            if answer.status_code == 409:  # finished first: never canceled afterwards
                assert builds[build_id]["status"] in {"COMPLETED", "FAILED"}
    finally:
        server.stop()

    restarted = ServerProcess(server.store, env=server.env, port=server.port).start()
    try:
        time.sleep(3)  # a requeued build would be claimed (and BUILDING) by now
        after = _statuses(restarted, ids)
        assert {i: b["status"] for i, b in after.items()} == {
            i: b["status"] for i, b in builds.items()
        }
        assert all(after[i]["attempt"] == builds[i]["attempt"] for i in ids)
    finally:
        restarted.stop()
