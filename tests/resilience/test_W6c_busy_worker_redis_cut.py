"""W6c: Redis is cut while every slot of a Celery worker is busy. The running build's late
acknowledgement fails; the worker must still read its queues once Redis is back, instead of
looking alive and taking no work until restarted (the pack-job side of W6c is W6b, run on one
slot, in test_distributed_packs.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.cluster import REDIS_URL, Cluster, fresh_schema
from tests.support.local_index import LocalIndex
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]

TERMINAL = {"COMPLETED", "FAILED", "CANCELED"}


def test_W6c_redis_cut_while_the_only_slot_builds_the_worker_builds_again_after(
    pg_database: str, tmp_path: Path, index: LocalIndex
) -> None:
    fresh_schema(pg_database)
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    with TcpProxy(host, int(port)) as proxy:
        cluster = Cluster(
            tmp_path,
            pg_database,
            f"redis://127.0.0.1:{proxy.port}/0",
            ENVSTORE_PYPI_INDEX_URL=index.url,
        )
        try:
            api = cluster.api()
            worker = cluster.worker(concurrency=1)
            index.delay = 3
            first = api.submit("w6cpkg==1.0\n", name="w6c-first")
            api.wait_for(first, {"BUILDING"}, timeout=30)
            proxy.block()
            assert api.wait_for(first, TERMINAL, timeout=60)["status"] == "COMPLETED"
            deadline = time.monotonic() + 30  # its acknowledgement was lost with Redis
            while "Couldn't ack" not in worker.log.read_text():
                assert time.monotonic() < deadline, worker.log.read_text()
                time.sleep(0.2)
            time.sleep(8)  # longer than the worker's watchdog waits: it reconnects while cut
            proxy.unblock()
            index.delay = 0
            second = api.submit("w6cpkg==1.0\n", name="w6c-second")
            done = api.wait_for(second, TERMINAL, timeout=90)
            assert done["status"] == "COMPLETED" and done["attempt"] == 1
            assert api.build(first)["attempt"] == 1
            assert worker.process is not None and worker.process.poll() is None
            # the only worker built both; the first one once (a second delivery is a no-op)
            assert worker.log.read_text().count("'COMPLETED'") == 2
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.close()
