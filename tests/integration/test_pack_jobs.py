"""Pack jobs (issue 11): a build is COMPLETED before its archive and image exist; they are made
afterwards by a job of their own, on SQLite and PostgreSQL. The packing itself runs in a real
runner process (``PackExecutor``) on the build's published prefix."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import zstandard
from fastapi.testclient import TestClient

from envstore.artifacts.oci import ZSTD_LAYER_MEDIA_TYPE
from envstore.db.engine import session_scope
from envstore.db.models import utcnow
from envstore.jobs.inprocess import InProcessQueue
from envstore.jobs.packer import PackExecutor
from envstore.jobs.runners import RunnerPool
from envstore.services import dispatch, packing
from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, fail, submit

ARTIFACTS = ("LOCKFILE", "YAML", "LOGS", "CONDA_PACK", "DOCKER_MANIFEST")


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return client_for(settings)


@pytest.fixture
def packer(client: TestClient) -> Iterator[PackExecutor]:
    state = client.app.state.envstore  # type: ignore[attr-defined]
    runners = RunnerPool(state.settings)
    yield PackExecutor(state.settings, state.factory, state.blobs, runners, state.events)
    runners.close_all()


def _state(client: TestClient) -> Any:
    return client.app.state.envstore  # type: ignore[attr-defined]


def _claim(client: TestClient, worker: str = "h:1:0") -> packing.ClaimedPack | None:
    state = _state(client)
    with session_scope(state.factory) as db:
        for build_id in packing.next_packs(db):
            claimed = packing.claim_pack(db, state.settings, build_id, worker)
            if claimed is not None:
                return claimed
    return None


def _record_packed(client: TestClient, claimed: packing.ClaimedPack) -> None:
    """Complete a claimed pack job as its worker would, with a stand-in archive and image."""
    state = _state(client)
    data = b"an archive"
    digest = state.blobs.put_bytes(data)
    with session_scope(state.factory) as db:
        rows = [("CONDA_PACK", digest, len(data)), ("DOCKER_MANIFEST", digest, len(data))]
        packed = packing.PackedBlobs(rows)
        assert packing.record_packed(db, state.blobs, claimed, "h:1:0", packed, "packed")


def _build(client: TestClient, build_id: int) -> dict[str, Any]:
    data: dict[str, Any] = client.get(f"/api/v1/build/{build_id}/").json()["data"]
    return data


def _completed(client: TestClient, name: str = "env1") -> int:
    build_id = submit(client, name=name)
    complete(client, build_id, artifacts=ARTIFACTS)
    return build_id


def test_completed_before_its_archive_and_404_names_the_state(client: TestClient) -> None:
    build_id = _completed(client)
    build = _build(client, build_id)
    assert build["status"] == "COMPLETED" and build["artifacts_status"] == "QUEUED"
    kinds = {a["artifact_type"] for a in build["build_artifacts"]}
    assert kinds == {"LOCKFILE", "YAML", "LOGS", "DIRECTORY"}
    for route in ("archive", "docker"):
        missing = client.get(f"/api/v1/build/{build_id}/{route}/?wait=0")
        assert missing.status_code == 404
        assert "made after the build completed and is QUEUED" in missing.json()["message"]
    for bad in ("-1", "301", "soon"):
        answer = client.get(f"/api/v1/build/{build_id}/archive/?wait={bad}")
        assert answer.status_code == 422 and "wait" in answer.json()["message"]


def test_no_pack_job_when_build_artifacts_leaves_them_out(client: TestClient) -> None:
    build_id = submit(client)
    complete(client, build_id, artifacts=("LOCKFILE", "YAML", "LOGS"))
    assert _build(client, build_id)["artifacts_status"] is None
    missing = client.get(f"/api/v1/build/{build_id}/archive/")  # nothing to wait for
    assert missing.status_code == 404
    assert (
        missing.json()["message"]
        == f"build {build_id} has no CONDA_PACK artifact (status COMPLETED)"
    )


def test_pack_job_links_archive_and_image_then_reuses_them(
    client: TestClient, packer: PackExecutor
) -> None:
    first = _completed(client)
    claimed = _claim(client)
    assert claimed is not None and claimed.kinds == ["CONDA_PACK", "DOCKER_MANIFEST"]
    packer.run(claimed, "h:1:0")
    build = _build(client, first)
    assert build["status"] == "COMPLETED" and build["artifacts_status"] == "COMPLETED"
    assert {"CONDA_PACK", "DOCKER_MANIFEST"} <= {
        a["artifact_type"] for a in build["build_artifacts"]
    }
    archive = client.get(f"/api/v1/build/{first}/archive/")
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        assert "bin/conda-unpack" in tar.getnames()
    reference = client.get(f"/api/v1/build/{first}/docker/").json()["data"]
    manifest = client.get(f"/v2/default/env1/manifests/{reference['digest']}").json()
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == ZSTD_LAYER_MEDIA_TYPE
    blob = client.get(f"/v2/default/env1/blobs/{layer['digest']}").content
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob))
    with tarfile.open(fileobj=plain, mode="r|") as tar:
        assert "opt/env/bin/conda-unpack" in [member.name for member in tar]
    log = client.get(f"/api/v1/build/{first}/logs/").text
    assert "artifacts CONDA_PACK, DOCKER_MANIFEST ready" in log

    # The same lockfile again (another environment): its job links the same blobs.
    second = _completed(client, name="env2")
    again = _claim(client)
    assert again is not None and again.pack_key == claimed.pack_key
    packer.run(again, "h:1:0")
    copied = _build(client, second)
    assert copied["artifacts_status_info"] == (
        f"reused the artifacts of build {first} (same lockfile and packing settings)"
    )
    keys = {a["artifact_type"]: a["key"] for a in build["build_artifacts"]}
    for artifact in copied["build_artifacts"]:
        if artifact["artifact_type"] in ("CONDA_PACK", "DOCKER_MANIFEST"):
            assert artifact["key"] == keys[artifact["artifact_type"]]


def test_failed_pack_keeps_the_build_usable_and_rebuild_artifacts_retries(
    client: TestClient, packer: PackExecutor
) -> None:
    build_id = _completed(client)
    claimed = _claim(client)
    assert claimed is not None
    prefix = _state(client).layout.prefix(claimed.namespace, claimed.build_key)
    prefix.rmdir()  # nothing to pack: the pack process fails
    packer.run(claimed, "h:1:0")
    build = _build(client, build_id)
    assert build["status"] == "COMPLETED" and build["artifacts_status"] == "FAILED"
    assert "FileNotFoundError" in build["artifacts_status_info"]
    assert (
        "artifacts FAILED (the build stays usable)"
        in client.get(f"/api/v1/build/{build_id}/logs/").text
    )
    missing = client.get(f"/api/v1/build/{build_id}/archive/").json()["message"]
    assert "packing failed" in missing and f"rebuild-artifacts {build_id}" in missing

    retried = client.put(f"/api/v1/build/{build_id}/artifacts/")
    assert retried.status_code == 200
    assert retried.json()["data"] == {"build_id": build_id, "artifacts_status": "QUEUED"}
    assert _build(client, build_id)["artifacts_status"] == "QUEUED"
    prefix.mkdir()
    again = _claim(client)
    assert again is not None and again.build_id == build_id and again.attempt == 1
    packer.run(again, "h:1:0")
    assert _build(client, build_id)["artifacts_status"] == "COMPLETED"
    assert client.get(f"/api/v1/build/{build_id}/archive/").status_code == 200


def test_rebuild_artifacts_of_an_unfinished_build_is_a_conflict(client: TestClient) -> None:
    failed = submit(client)
    fail(client, failed)
    answer = client.put(f"/api/v1/build/{failed}/artifacts/")
    assert answer.status_code == 409
    assert answer.json()["message"] == (
        f"build {failed} is FAILED; only a COMPLETED build has an archive and image"
    )


def test_archive_request_waits_for_the_pack_job(client: TestClient) -> None:
    build_id = _completed(client)
    answers: list[tuple[int, float]] = []

    def download() -> None:
        start = time.monotonic()
        response = client.get(f"/api/v1/build/{build_id}/archive/?wait=20")
        answers.append((response.status_code, time.monotonic() - start))

    waiter = threading.Thread(target=download)
    waiter.start()
    time.sleep(0.5)
    state = _state(client)
    claimed = _claim(client)
    assert claimed is not None
    _record_packed(client, claimed)
    state.events.changed(build_id)
    waiter.join(timeout=30)
    ((status, seconds),) = answers
    assert status == 200 and 0.5 <= seconds < 5


def test_W4_W1_pack_job_claimed_once_and_requeued_when_its_worker_dies(
    client: TestClient, settings: Settings
) -> None:
    build_id = _completed(client)
    dead = f"{socket.gethostname()}:999999999:0"  # a process id that cannot run
    assert _claim(client, dead) is not None
    assert _claim(client, "h:2:0") is None  # W4: delivered twice, packed once
    queue = InProcessQueue(settings, _state(client).factory, _state(client).blobs)
    queue.reap()
    assert _build(client, build_id)["artifacts_status"] == "QUEUED"
    assert _claim(client, dead) is not None  # attempt 2 of max_build_attempts (2)
    queue.reap()
    build = _build(client, build_id)
    assert build["artifacts_status"] == "FAILED" and build["status"] == "COMPLETED"
    assert json.dumps(build["artifacts_status_info"]).count("worker_lost") == 1


class _SlowUploads:
    """A blob store whose uploads of hashed files take ``seconds`` each (a large layer to S3)."""

    def __init__(self, blobs: Any, seconds: float) -> None:
        self._blobs, self._seconds = blobs, seconds

    def put_hashed_file(self, path: Any, digest: str) -> Any:
        time.sleep(self._seconds)
        return self._blobs.put_hashed_file(path, digest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blobs, name)


def test_a_pack_job_beats_while_it_uploads_so_no_reaper_takes_it_back(
    client: TestClient,
) -> None:
    state = _state(client)
    settings = state.settings.model_copy(
        update={"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0}
    )
    build_id = _completed(client)
    claimed = _claim(client)
    assert claimed is not None
    runners = RunnerPool(settings)
    slow = _SlowUploads(state.blobs, 1.0)  # two uploads (archive, layer): 2 s > the timeout
    packer = PackExecutor(settings, state.factory, slow, runners, state.events)  # type: ignore[arg-type]
    stale: list[list[int]] = []

    def watch() -> None:  # what the reaper sees, while the upload goes on
        while thread.is_alive():
            cutoff = utcnow() - timedelta(seconds=settings.heartbeat_timeout)
            with session_scope(state.factory) as db:
                stale.append([p.build_id for p in dispatch.stale_packing(db, cutoff)])
            time.sleep(0.1)

    thread = threading.Thread(target=packer.run, args=(claimed, "h:1:0"))
    thread.start()
    watch()
    thread.join()
    runners.close_all()
    assert len(stale) > 10 and not any(stale), stale
    assert _build(client, build_id)["artifacts_status"] == "COMPLETED"


def test_the_reaper_cannot_fail_a_pack_job_its_worker_completed(client: TestClient) -> None:
    """The reaper decides on a stale job, then fails it with no worker id: a worker that
    linked the artifacts in between keeps its COMPLETED job (found by review)."""
    build_id = _completed(client)
    state = _state(client)
    claimed = _claim(client)
    assert claimed is not None
    _record_packed(client, claimed)
    with session_scope(state.factory) as db:
        packing.fail_pack(db, build_id, None, "worker_lost: no heartbeat")
    build = _build(client, build_id)
    assert build["artifacts_status"] == "COMPLETED"
    assert client.get(f"/api/v1/build/{build_id}/archive/").status_code == 200
