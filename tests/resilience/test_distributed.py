"""RELIABILITY.md scenarios through the distributed mode: ``envstore serve --no-workers`` and
``envstore worker`` (Celery, Redis broker) on PostgreSQL, all started here as processes.

Builds are real uv builds against the loopback index of tests/support/local_index, slowed down
on demand so that a build can be caught while BUILDING.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envstore.jobs.celery_app import Broker
from envstore.settings import Settings
from tests.support.cluster import Cluster, fresh_schema
from tests.support.local_index import LocalIndex, local_index
from tests.support.server import processes_mentioning

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]


@pytest.fixture
def index() -> Iterator[LocalIndex]:
    with local_index() as idx:
        yield idx


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


def _broker(cluster: Cluster) -> Broker:
    env = cluster.env
    return Broker.connect(
        Settings(broker_url=env["ENVSTORE_BROKER_URL"], queue_prefix=env["ENVSTORE_QUEUE_PREFIX"])
    )


def test_W4_same_build_delivered_twice_builds_once(cluster: Cluster, index: LocalIndex) -> None:
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
    prefixes = [
        p.name for p in (cluster.store / "envs" / "default").iterdir() if not p.is_symlink()
    ]
    assert prefixes == [done["build_key"]]
    time.sleep(0.5)
    log = cluster.workers[0].log.read_text()
    assert log.count("'COMPLETED'") == 1 and log.count("'skipped'") == 1, log


def test_W8_cancel_reaches_the_worker_and_kills_its_tree(
    cluster: Cluster, index: LocalIndex
) -> None:
    api = cluster.api()
    cluster.worker(concurrency=1)
    index.delay = 120
    build_id = api.submit("w8pkg==1.0\n", name="w8")
    build = api.wait_for(build_id, {"BUILDING"}, timeout=30)
    time.sleep(0.5)
    assert processes_mentioning(f"work/{build_id}-1")
    started = time.monotonic()
    assert api.api("PUT", f"/build/{build_id}/cancel/").status_code == 200
    done = api.wait_for(build_id, {"CANCELED", "FAILED", "COMPLETED"}, timeout=10)
    assert done["status"] == "CANCELED"
    assert time.monotonic() - started < 10
    time.sleep(0.5)
    assert processes_mentioning(f"work/{build_id}-1") == []
    assert not (cluster.store / "envs" / "default" / str(build["build_key"])).exists()
    again = api.api("PUT", f"/build/{build_id}/cancel/")
    assert again.status_code == 409
    index.delay = 0  # the worker slot is free again
    other = api.submit("w8other==1.0\n", name="w8b")
    assert api.wait_for(other, {"COMPLETED", "FAILED"}, timeout=60)["status"] == "COMPLETED"
