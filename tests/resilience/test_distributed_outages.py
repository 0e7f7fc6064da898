"""The distributed mode under failures: D1 (PostgreSQL cut), W6 and D8 (Redis cut), W12 (a
worker SIGKILLed with 40 builds in flight), and artifacts end to end in S3 (moto server).

PostgreSQL and Redis are reached through loopback TCP proxies that the test cuts; every process
(API, workers) is started here.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import text

from envstore.db.engine import make_engine
from envstore.jobs.celery_app import Broker
from envstore.settings import Settings
from tests.resilience.test_database_outage import _outage
from tests.support.cluster import REDIS_URL, Cluster
from tests.support.local_index import LocalIndex
from tests.support.server import free_port
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

TERMINAL = {"COMPLETED", "FAILED", "CANCELED"}


def _cluster(tmp_path: Path, url: str, index: LocalIndex, **env: str) -> Cluster:
    return Cluster(tmp_path, url, ENVSTORE_PYPI_INDEX_URL=index.url, **env)


def test_D1_postgres_cut_10s_under_load_with_celery_workers(
    database: str, tmp_path: Path, index: LocalIndex
) -> None:
    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        # heartbeats stop while the database is away: the reaper must not take that for a
        # dead worker, so the timeout is longer than the outage (docs/deploy.md)
        cluster = _cluster(tmp_path, url, index, ENVSTORE_HEARTBEAT_TIMEOUT="30")
        try:
            api = cluster.api()
            cluster.worker(concurrency=1)
            _outage(api, proxy, index)  # the same pass criteria as the embedded D1
        finally:
            cluster.close()


def test_W6_D8_redis_cut_30s_while_50_specs_are_submitted_loses_no_build(
    database: str, tmp_path: Path, index: LocalIndex
) -> None:
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    with TcpProxy(host, int(port)) as proxy:
        broker_url = f"redis://127.0.0.1:{proxy.port}/0"
        cluster = _cluster(tmp_path, database, index, ENVSTORE_BROKER_URL=broker_url)
        try:
            api = cluster.api()
            cluster.worker(concurrency=4)
            index.delay = 6
            running = api.submit("d8pkg==1.0\n", name="d8")
            api.wait_for(running, {"BUILDING"}, timeout=30)
            time.sleep(1)  # its download has started; the others are fast
            index.delay = 0
            proxy.block()
            cut_at = time.monotonic()
            answers = []
            for n in range(50):
                response = api.api(
                    "POST",
                    "/specification/",
                    json={"specification": "w6pkg==1.0\n", "environment_name": f"w6-{n}"},
                )
                answers.append((response.status_code, response.headers.get("retry-after")))
                time.sleep(0.4)
            assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 503
            assert httpx.get(f"{api.url}/livez", timeout=10).status_code == 200
            assert all(s == 200 or (s == 503 and retry) for s, retry in answers), answers
            assert api.wait_for(running, TERMINAL, timeout=30)["status"] == "COMPLETED"
            time.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
            proxy.unblock()
            back_at = time.monotonic()
            ids = [b["id"] for b in _all_builds(api) if b["id"] != running]
            assert len(ids) == sum(1 for s, _ in answers if s == 200)
            while _count(api, "QUEUED"):  # every queued build picked up within 60 s
                assert time.monotonic() - back_at < 60, cluster.logs()
                time.sleep(0.5)
            for build_id in ids:
                assert api.wait_for(build_id, TERMINAL, timeout=60)["status"] == "COMPLETED"
            assert api.build(running)["attempt"] == 1
            assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 200
        finally:
            cluster.close()


def test_W12_worker_sigkilled_with_40_builds_in_flight(
    database: str, tmp_path: Path, index: LocalIndex
) -> None:
    cluster = _cluster(tmp_path, database, index)
    try:
        api = cluster.api()
        doomed = cluster.worker(concurrency=2)
        cluster.worker(concurrency=2)
        index.delay = 0.5  # long enough to catch builds mid-way, short for CI
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            ids = list(pool.map(lambda n: api.submit("w12pkg==1.0\n", name=f"w12-{n}"), range(40)))
        deadline = time.monotonic() + 60
        while not _building_on(database, doomed.pid):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        doomed.kill9()
        killed = _building_on(database, doomed.pid)
        builds = [api.wait_for(i, TERMINAL, timeout=120) for i in ids]
        assert {b["status"] for b in builds} == {"COMPLETED"}, [b["status_info"] for b in builds]
        retried = {b["id"] for b in builds if b["attempt"] == 2}
        assert killed and set(killed) <= retried
        logs = "".join(w.log.read_text() for w in cluster.workers)
        assert logs.count("'COMPLETED'") == 40  # no build completed twice
        keys = {b["build_key"] for b in builds}
        prefixes = cluster.store / "builds" / "default"  # one prefix per build (D7 layout)
        assert {p.name for p in prefixes.iterdir()} == keys
        for build in builds:  # every environment complete, none half-written
            site = prefixes / build["build_key"] / "lib" / "python3.11" / "site-packages"
            assert (site / "w12pkg" / "__init__.py").read_text() == "VERSION = '1.0'\n"
            types = [a["artifact_type"] for a in build["build_artifacts"]]
            assert sorted(types) == sorted(set(types))
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.close()


def test_S3_artifacts_end_to_end_through_the_api(
    database: str, tmp_path: Path, index: LocalIndex
) -> None:
    with _moto(tmp_path) as endpoint:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket="artifacts")
        cluster = _cluster(
            tmp_path,
            database,
            index,
            ENVSTORE_BLOB_STORE="s3",
            ENVSTORE_S3_BUCKET="artifacts",
            ENVSTORE_S3_ENDPOINT_URL=endpoint,
            ENVSTORE_S3_REGION="us-east-1",
            ENVSTORE_S3_ACCESS_KEY_ID="test",
            ENVSTORE_S3_SECRET_ACCESS_KEY="test",
            ENVSTORE_BUILD_ARTIFACTS='["LOCKFILE", "YAML", "LOGS", "CONDA_PACK"]',
            ENVSTORE_GC_KEEP_LAST="1",
            ENVSTORE_GC_GRACE_SECONDS="0",
        )
        try:
            api = cluster.api()
            cluster.worker(concurrency=1)
            old = api.wait_for(api.submit("s3pkg==1.0\n", name="s3"), TERMINAL, timeout=60)
            new = api.wait_for(api.submit("s3pkg==2.0\n", name="s3"), TERMINAL, timeout=60)
            assert old["status"] == new["status"] == "COMPLETED"
            # the archive is packed after COMPLETED, by a task of the artifacts queue
            api.wait_for_artifacts(old["id"], timeout=60)
            api.wait_for_artifacts(new["id"], timeout=60)
            old_blobs = _verified_downloads(api, database, old["id"])
            new_blobs = _verified_downloads(api, database, new["id"])
            stored = _objects(s3)
            assert old_blobs | new_blobs <= stored
            broker = Broker.connect(
                Settings(broker_url=REDIS_URL, queue_prefix=cluster.env["ENVSTORE_QUEUE_PREFIX"])
            )
            broker.send_gc()  # the gc queue's job, as the leader reaper sends it periodically
            broker.close()
            deadline = time.monotonic() + 30
            while old_blobs & _objects(s3):
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(0.3)
            assert new_blobs <= _objects(s3)
            assert _verified_downloads(api, database, new["id"]) == new_blobs
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.close()


def _verified_downloads(api: Any, database: str, build_id: int) -> set[str]:
    """Download the build's lockfile, YAML and archive through the API and check each against
    the digest recorded in the database; returns those digests."""
    engine = make_engine(database)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT artifact_type, sha256 FROM build_artifact WHERE build_id = :b"),
            {"b": build_id},
        )
        digests = {str(kind): str(digest) for kind, digest in rows if digest}
    engine.dispose()
    assert set(digests) == {"LOCKFILE", "YAML", "CONDA_PACK"}
    for kind, route in (("LOCKFILE", "lockfile"), ("YAML", "yaml")):
        answer = api.api("GET", f"/build/{build_id}/{route}/")
        assert answer.status_code == 200
        assert hashlib.sha256(answer.content).hexdigest() == digests[kind]
    archive = api.api("GET", f"/build/{build_id}/archive/", follow_redirects=False)
    assert archive.status_code == 307  # straight from the object store, signed
    data = httpx.get(archive.headers["location"], timeout=30).content
    assert hashlib.sha256(data).hexdigest() == digests["CONDA_PACK"]
    return set(digests.values())


def _objects(s3: Any) -> set[str]:
    listed = s3.list_objects_v2(Bucket="artifacts").get("Contents", [])
    return {item["Key"].rsplit("/", 1)[-1] for item in listed}


class _moto:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.log = tmp_path / "moto.log"

    def __enter__(self) -> str:
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "moto_server"), "-p", str(self.port)],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                return url
            except httpx.TransportError:
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _all_builds(api: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        body = api.api("GET", "/build/", params={"page": page, "size": 100}).json()
        found += body["data"]
        if len(found) >= body["count"]:
            return found
        page += 1


def _count(api: Any, status: str) -> int:
    return int(api.api("GET", "/build/", params={"status": status}).json()["count"])


def _building_on(database: str, pid: int) -> list[int]:
    """Builds BUILDING in the worker process ``pid`` (its slots' ids name the process)."""
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id FROM build WHERE status = 'BUILDING' AND worker_id LIKE :p"),
                {"p": f"%:{pid}:%"},
            )
            return [int(r[0]) for r in rows]
    finally:
        engine.dispose()
