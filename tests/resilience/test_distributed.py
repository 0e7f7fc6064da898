"""RELIABILITY.md scenarios through the distributed mode: ``envstore serve --no-workers`` and
``envstore worker`` (Celery, Redis broker) on PostgreSQL, all started here as processes:
W1, W3, W4, W7, W8, W9, W10 (outages and W12 are in test_distributed_outages.py).

Builds are real uv builds against the loopback index of tests/support/local_index, slowed down
on demand so that a build can be caught while BUILDING.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envstore.jobs.celery_app import Broker
from envstore.settings import Settings
from tests.support.cluster import Cluster, fresh_schema
from tests.support.local_index import LocalIndex
from tests.support.server import ServerProcess, processes_mentioning

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

LOG_LIMIT = 1024  # the shared cluster's max_log_bytes (W10)


@pytest.fixture
def cluster(pg_database: str, tmp_path: Path, index: LocalIndex) -> Iterator[Cluster]:
    fresh_schema(pg_database)
    made = Cluster(tmp_path, pg_database, ENVSTORE_PYPI_INDEX_URL=index.url)
    try:
        yield made
    except BaseException:
        print(made.logs())
        raise
    finally:
        made.close()


@pytest.fixture(scope="module")
def shared(
    pg_database: str, tmp_path_factory: pytest.TempPathFactory, module_index: LocalIndex
) -> Iterator[tuple[Cluster, ServerProcess]]:
    """One API and two workers of concurrency 2 (W8, W9, W10)."""
    fresh_schema(pg_database)
    made = Cluster(
        tmp_path_factory.mktemp("shared"),
        pg_database,
        ENVSTORE_PYPI_INDEX_URL=module_index.url,
        ENVSTORE_MAX_LOG_BYTES=str(LOG_LIMIT),
    )
    try:
        api = made.api()
        made.worker(concurrency=2)
        made.worker(concurrency=2)
        yield made, api
    except BaseException:
        print(made.logs())
        raise
    finally:
        made.close()


def _broker(cluster: Cluster) -> Broker:
    env = cluster.env
    return Broker.connect(
        Settings(broker_url=env["ENVSTORE_BROKER_URL"], queue_prefix=env["ENVSTORE_QUEUE_PREFIX"])
    )


def _dirs(cluster: Cluster) -> set[str]:
    """The build prefixes in the store (one per build, beside the environment links)."""
    root = cluster.store / "builds" / "default"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def _build_processes(cluster: Cluster, build: dict[str, Any]) -> list[int]:
    """The build's processes (its tools name its prefix, or work in its scratch directory)."""
    return processes_mentioning(str(build["build_key"])) + processes_mentioning(
        f"{cluster.store}/work/{build['id']}-"
    )


def _gone(cluster: Cluster, build: dict[str, Any], within: float) -> bool:
    """True once no process of ``build`` is left, polled for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while _build_processes(cluster, build):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_W4_same_build_delivered_twice_builds_once(cluster: Cluster, index: LocalIndex) -> None:
    _delivered_twice(cluster, index)


def test_W4_on_rabbitmq(pg_database: str, tmp_path: Path, index: LocalIndex) -> None:
    """RabbitMQ, the documented alternative broker, runs the same build path."""
    fresh_schema(pg_database)
    url = os.environ.get("ENVSTORE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
    cluster = Cluster(tmp_path, pg_database, url, ENVSTORE_PYPI_INDEX_URL=index.url)
    try:
        _delivered_twice(cluster, index)
    finally:
        cluster.close()


def _delivered_twice(cluster: Cluster, index: LocalIndex) -> None:
    api = cluster.api()
    index.delay = 1.5
    build_id = api.submit("w4pkg==1.0\n", name="w4")
    broker = _broker(cluster)
    broker.send_build(build_id)  # the duplicate, in the queue before any worker runs
    broker.close()
    cluster.worker(concurrency=2)
    done = api.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert done["status"] == "COMPLETED" and done["attempt"] == 1
    types = [a["artifact_type"] for a in done["build_artifacts"]]
    assert sorted(types) == sorted(set(types))
    assert _dirs(cluster) == {done["build_key"]}
    time.sleep(0.5)
    log = cluster.workers[0].log.read_text()
    builds = re.findall(r"Task envstore\.build\[[^]]*\] succeeded in [^:]*: '(\w+)'", log)
    assert sorted(builds) == ["COMPLETED", "skipped"], log


def test_W1_kill9_worker_midbuild_requeues_on_another_worker(
    cluster: Cluster, index: LocalIndex
) -> None:
    api = cluster.api()
    doomed = cluster.worker(concurrency=1)
    first = api.submit("w1pkg==1.0\n", name="w1")
    good = api.wait_for(first, {"COMPLETED"}, timeout=60)
    index.delay = 120
    second = api.submit("w1pkg==2.0\n", name="w1")
    building = api.wait_for(second, {"BUILDING"}, timeout=30)
    time.sleep(0.5)
    doomed.kill9()
    killed_at = time.monotonic()
    # the orphaned build process notices its parent is gone and kills its group
    assert _gone(cluster, building, within=5)
    link = cluster.store / "envs" / "default" / "w1"
    assert link.resolve().name == good["build_key"]  # the current environment is unchanged
    index.delay = 0
    cluster.worker(concurrency=1)
    done = api.wait_for(second, {"COMPLETED", "FAILED"}, timeout=60)
    assert time.monotonic() - killed_at < 60
    assert done["status"] == "COMPLETED" and done["attempt"] == 2
    types = [a["artifact_type"] for a in done["build_artifacts"]]
    assert sorted(types) == sorted(set(types))  # one artifact set, none left by the dead attempt
    assert link.resolve().name == done["build_key"] == building["build_key"]
    log = api.api("GET", f"/build/{second}/logs/").text
    assert "attempt 1" in log and "attempt 2" in log
    assert _dirs(cluster) == {good["build_key"], done["build_key"]}
    assert not any((cluster.store / "work").glob(f"{second}-*"))


def test_W3_sigterm_drains_the_worker_and_requeues_its_build(
    cluster: Cluster, index: LocalIndex
) -> None:
    api = cluster.api()
    draining = cluster.worker(concurrency=1, ENVSTORE_SHUTDOWN_GRACE="2")
    index.delay = 120
    build_id = api.submit("w3pkg==1.0\n", name="w3")
    api.wait_for(build_id, {"BUILDING"}, timeout=30)
    started = time.monotonic()
    draining.terminate(timeout=30)
    assert time.monotonic() - started < 2 + 10
    assert api.build(build_id)["status"] == "QUEUED"
    index.delay = 0
    cluster.worker(concurrency=1)
    done = api.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert done["status"] == "COMPLETED"
    assert done["attempt"] == 1  # the interrupted attempt does not count against the build
    log = api.api("GET", f"/build/{build_id}/logs/").text
    assert "interrupted" in log and log.count("build COMPLETED") <= 1


def test_W7_hanging_solve_fails_with_solve_timeout(cluster: Cluster, index: LocalIndex) -> None:
    api = cluster.api()
    cluster.worker(concurrency=1, ENVSTORE_SOLVE_TIMEOUT="3")
    index.delay = 120
    build_id = api.submit("w7pkg==1.0\n", name="w7")
    building = api.wait_for(build_id, {"BUILDING"}, timeout=30)
    started = time.monotonic()
    done = api.wait_for(build_id, {"FAILED", "COMPLETED", "CANCELED"}, timeout=30)
    assert done["status"] == "FAILED" and done["status_info"].startswith("solve_timeout")
    assert time.monotonic() - started < 3 + 10
    assert _gone(cluster, building, within=3)


def test_W8_cancel_reaches_the_worker_and_kills_its_tree(
    shared: tuple[Cluster, ServerProcess], index: LocalIndex
) -> None:
    cluster, api = shared
    index.delay = 120
    build_id = api.submit("w8pkg==1.0\n", name="w8")
    build = api.wait_for(build_id, {"BUILDING"}, timeout=30)
    deadline = time.monotonic() + 10
    while not _build_processes(cluster, build):  # its tools run
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    assert api.api("PUT", f"/build/{build_id}/cancel/").status_code == 200
    done = api.wait_for(build_id, {"CANCELED", "FAILED", "COMPLETED"}, timeout=10)
    assert done["status"] == "CANCELED"
    assert time.monotonic() - started < 10
    assert _gone(cluster, build, within=3)
    assert not (cluster.store / "builds" / "default" / str(build["build_key"])).exists()
    again = api.api("PUT", f"/build/{build_id}/cancel/")
    assert again.status_code == 409 and "CANCELED" in again.json()["message"]


def test_W9_100_builds_never_more_than_n_at_once(
    shared: tuple[Cluster, ServerProcess], index: LocalIndex
) -> None:
    cluster, api = shared
    slots = sum(w.concurrency for w in cluster.workers)
    # Each build waits 1 s for a wheel of its own (none in uv's cache): fast builds on a loaded machine finished about as
    # fast as the submits came, so the sampler below, which starts after them, saw one at a
    # time (CI run p1, two CI runs at once) and could not tell that the slots were used.
    index.delay = 1
    ids = [api.submit(f"w9pkg{n}==1.0\n", name=f"w9-{n}") for n in range(100)]
    most = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        page = api.api("GET", "/build/", params={"status": "BUILDING"}).json()
        most = max(most, page["count"])
        left = api.api("GET", "/build/", params={"status": "QUEUED"}).json()["count"]
        if left == 0 and page["count"] == 0:
            break
        time.sleep(0.05)
    assert 1 < most <= slots
    failed = {b["id"]: b["status_info"] for b in map(api.build, ids) if b["status"] != "COMPLETED"}
    assert failed == {}


def test_W10_worker_log_is_capped_with_one_marker(
    shared: tuple[Cluster, ServerProcess], index: LocalIndex
) -> None:
    """The append cost at line 1 vs 50,000 is measured on PostgreSQL in
    tests/integration/test_worker_services.py; here the worker streams a log past the cap."""
    _cluster, api = shared
    build_id = api.submit("w10pkg==1.0\n", name="w10")
    done = api.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=60)
    assert done["status"] == "COMPLETED"
    log = api.api("GET", f"/build/{build_id}/logs/").content
    assert log.count(b"log truncated") == 1 and log.rstrip().endswith(b"(max_log_bytes)")
    assert LOG_LIMIT < len(log) < LOG_LIMIT + 200
