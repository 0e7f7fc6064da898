"""Pack jobs (a COMPLETED build's archive, made afterwards on the ``artifacts`` queue) in the
distributed mode under failures: W6b (Redis cut while a build completes: its pack job is sent
once Redis is back) and W1b (the worker packing is SIGKILLed mid-pack: the job is queued again
and another worker packs it whole). Both rely on the leader reaper (jobs/distributed.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from envstore.db.engine import make_engine
from tests.support.cluster import REDIS_URL, Cluster
from tests.support.local_index import BIG_PAYLOAD, LocalIndex
from tests.support.server import ServerProcess, processes_mentioning
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(180)]

ARCHIVE = '["LOCKFILE", "YAML", "LOGS", "CONDA_PACK"]'


def test_W6b_redis_cut_while_a_build_completes_its_pack_job_is_sent_after(
    database: str, tmp_path: Path, index: LocalIndex
) -> None:
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    with TcpProxy(host, int(port)) as proxy:
        cluster = Cluster(
            tmp_path,
            database,
            f"redis://127.0.0.1:{proxy.port}/0",
            ENVSTORE_PYPI_INDEX_URL=index.url,
            ENVSTORE_BUILD_ARTIFACTS=ARCHIVE,
        )
        try:
            api = cluster.api()
            # one slot, busy through the cut (W6c): its late ack fails, and the worker must
            # still read its queues again to take the pack job once Redis is back
            worker = cluster.worker(concurrency=1)
            index.delay = 3
            build_id = api.submit("w6bpkg==1.0\n", name="w6b")
            api.wait_for(build_id, {"BUILDING"}, timeout=30)
            proxy.block()
            done = api.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=30)
            assert done["status"] == "COMPLETED"
            # A send of the pack job was tried, and failed: by the worker after the publish,
            # or by the leader reaper (it runs every second here), when it claimed the unsent
            # job first; the worker then leaves it alone, silently (CI run s2-1 had that race).
            deadline = time.monotonic() + 30
            while not _a_pack_send_failed(worker.log.read_text(), cluster.logs()):
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(0.2)
            assert api.build(build_id)["artifacts_status"] == "QUEUED"
            proxy.unblock()
            packed = api.wait_for_artifacts(build_id, timeout=60)
            assert packed["artifacts_status"] == "COMPLETED"
            _verified_archive(api, database, build_id)
            # a duplicate does nothing
            assert _pack_results(worker, packed=True).count("packed") == 1
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.close()


def _a_pack_send_failed(worker_log: str, all_logs: str) -> bool:
    return "pack job not dispatched now" in worker_log or "reaper pass failed" in all_logs


def test_W1b_worker_sigkilled_mid_pack_another_worker_packs_it_whole(
    database: str, tmp_path: Path, index: LocalIndex
) -> None:
    cluster = Cluster(
        tmp_path, database, ENVSTORE_PYPI_INDEX_URL=index.url, ENVSTORE_BUILD_ARTIFACTS=ARCHIVE
    )
    try:
        api = cluster.api()
        cluster.worker(concurrency=1, queues="builds")  # builds only: the pack job waits
        index.delay = 0
        # an incompressible 24 MiB payload: packing lasts long enough to be caught at it
        build_id = api.submit("big-w1b==1.0\n", name="w1b")
        assert api.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=60)["status"] == "COMPLETED"
        doomed = cluster.worker(concurrency=1, queues="artifacts")
        work = f"{cluster.store}/work/pack-{build_id}-1"
        deadline = time.monotonic() + 30
        while not (runners := processes_mentioning(work)):  # its runner is packing
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.01)
        doomed.kill9()  # the worker host dies: its runner with it
        for pid in runners:  # a runner may have gone with the worker's group already
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert api.build(build_id)["artifacts_status"] == "PACKING"  # caught mid-pack
        rescuer = cluster.worker(concurrency=1, queues="artifacts")
        packed = api.wait_for_artifacts(build_id, timeout=60)
        assert packed["artifacts_status"] == "COMPLETED" and packed["status"] == "COMPLETED"
        assert time.monotonic() - killed_at < 60
        archive = _verified_archive(api, database, build_id)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            payload = [m for m in tar.getmembers() if m.name.endswith("big_w1b/payload.bin")]
            assert [m.size for m in payload] == [BIG_PAYLOAD]
        # packed once: a second delivery (the reaper may send a job the worker is sending
        # at the same moment) finds it claimed and does nothing
        assert _pack_results(rescuer, packed=True).count("packed") == 1
        assert not _pack_results(doomed)
        assert _attempts(database, build_id) == 2
        assert not Path(work).exists()  # the dead attempt's scratch directory is gone
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


def _verified_archive(api: ServerProcess, database: str, build_id: int) -> bytes:
    """The build's archive downloaded through the API, checked against its recorded digest."""
    engine = make_engine(database)
    with engine.connect() as conn:
        digest = conn.execute(
            text(
                "SELECT sha256 FROM build_artifact"
                " WHERE build_id = :b AND artifact_type = 'CONDA_PACK'"
            ),
            {"b": build_id},
        ).scalar_one()
    engine.dispose()
    answer = api.api("GET", f"/build/{build_id}/archive/", follow_redirects=False)
    if answer.status_code in (302, 307):
        answer = httpx.get(answer.headers["location"], timeout=30)
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == digest
    return answer.content


def _pack_results(worker: Any, *, packed: bool = False) -> list[str]:
    """What each pack task of ``worker`` returned ('packed', or 'skipped' for a duplicate);
    with ``packed``, once one has returned 'packed': the job shows COMPLETED before its task
    returns (the task still removes its scratch directory), so a loaded machine can see the
    archive before the worker logs the task's result."""
    deadline = time.monotonic() + (30 if packed else 0)
    while True:
        log = worker.log.read_text()
        found = re.findall(r"Task envstore\.pack\[[^]]*\] succeeded in [^:]*: '(\w+)'", log)
        if "packed" in found or time.monotonic() >= deadline:
            return found
        time.sleep(0.2)


def _attempts(database: str, build_id: int) -> int:
    engine = make_engine(database)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT attempt FROM artifact_job WHERE build_id = :b"), {"b": build_id}
        ).scalar_one()
    engine.dispose()
    return int(found)
