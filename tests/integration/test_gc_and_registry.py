"""Retention and garbage collection (D6 included), the corrupted-blob route (D5), the diff
route and the registry, on an app whose builds are published through the worker services."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from envstore.db.engine import session_scope
from envstore.db.models import Build, BuildArtifact, utcnow
from envstore.pipeline.contract import BuildResult
from envstore.services import packing
from envstore.services import worker as svc
from envstore.services.artifacts import StagedBlob, store_artifact_files
from envstore.services.gc import Retention, collect
from envstore.settings import Settings
from envstore.storage.local import LocalBlobStore
from tests.integration.helpers import LOCK, client_for, complete, fail, submit


def _state(client: object) -> object:
    return client.app.state.envstore  # type: ignore[attr-defined]


def test_retention_keeps_current_last_n_and_recent_failures(settings: Settings) -> None:
    client = client_for(settings)
    ids = []
    for version in ("1.0", "2.0", "3.0"):
        ids.append(submit(client, f"six=={version}\n"))
        complete(client, ids[-1], version)
    failed = submit(client, "six==9\n")
    fail(client, failed)
    state = _state(client)
    client.put("/api/v1/environment/default/env1/", json={"build_id": ids[0]})  # roll back
    with session_scope(state.factory) as db:  # type: ignore[attr-defined]
        nothing = collect(db, state.blobs, settings.store_dir, Retention(grace_seconds=0))
        assert nothing.builds == []
        rules = Retention(keep_last=1, failed_days=1, grace_seconds=0)
        report = collect(db, state.blobs, settings.store_dir, rules)
    # build 1 is current (rolled back to), build 3 is the newest: build 2 expires; the
    # failure is younger than a day and stays.
    assert report.builds == [ids[1]]
    assert client.get(f"/api/v1/build/{ids[1]}/").status_code == 404
    for kept in (ids[0], ids[2], failed):
        assert client.get(f"/api/v1/build/{kept}/").status_code == 200
    assert not state.layout.prefix("default", _key(state, ids[1])).exists()  # type: ignore[attr-defined]
    later = utcnow() + timedelta(days=2)
    with session_scope(state.factory) as db:  # type: ignore[attr-defined]
        report = collect(db, state.blobs, settings.store_dir, rules, now=later)
    assert report.builds == [failed]


def _key(state: object, build_id: int) -> str:
    with session_scope(state.factory) as db:  # type: ignore[attr-defined]
        return str(db.scalar(select(Build.build_key).where(Build.id == build_id)))


def test_D5_corrupted_artifact_is_refused_by_the_api(settings: Settings) -> None:
    client = client_for(settings)
    build_id = submit(client)
    complete(client, build_id)
    good = client.get(f"/api/v1/build/{build_id}/lockfile/")
    assert good.status_code == 200
    digest = hashlib.sha256(good.content).hexdigest()
    (settings.blobs_dir / digest).write_bytes(good.content.replace(b"six", b"evil"))
    bad = client.get(f"/api/v1/build/{build_id}/lockfile/")
    assert bad.status_code == 404 and "corrupted" in bad.json()["message"]
    assert b"evil" not in bad.content


class _PausingBlobs(LocalBlobStore):
    """The real local store, except that deleting ``digest`` waits until the test releases it:
    the collector has then decided the blob is unlinked and has not deleted it yet."""

    def __init__(self, root: Path, digest: str) -> None:
        super().__init__(root)
        self.digest = digest
        self.deleting = threading.Event()
        self.release = threading.Event()

    def delete(self, digest: str) -> None:
        if digest == self.digest:
            self.deleting.set()
            assert self.release.wait(60)
        super().delete(digest)


def _staged_archive(tmp_path: Path, data: bytes) -> list[dict[str, object]]:
    staged = tmp_path / f"archive-{hashlib.sha256(data).hexdigest()[:8]}"
    staged.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    return [{"artifact_type": "CONDA_PACK", "path": str(staged), "sha256": digest, "size": 2048}]


def _publish(
    state: Any, build_id: int, files: list[dict[str, object]], blobs: Any, upload: bool = True
) -> bool:
    """What the workers do after a build process succeeded: publish the build (lockfile and
    YAML), then its pack job uploads the archive (unless the test uploaded it earlier, to put a
    collection between the upload and the link) and links it."""
    with session_scope(state.factory) as db:
        claimed = svc.claim(db, build_id, "test:0:0")
        assert claimed is not None
    result = BuildResult(LOCK.replace("1.16.0", f"{build_id}.0"), "x: 1\n", [], 0, None)
    with session_scope(state.factory) as db:
        published, _ = svc.publish(
            db, blobs, claimed, result, f"envs/default/{build_id}", ("CONDA_PACK",)
        )
    assert published
    with session_scope(state.factory) as db:
        pack = packing.claim_pack(db, state.settings, build_id, "test:0:0")
        assert pack is not None
    if upload:
        store_artifact_files(state.blobs, files)
    packed = packing.PackedBlobs(
        [(str(f["artifact_type"]), str(f["sha256"]), int(str(f["size"]))) for f in files],
        [StagedBlob(str(f["sha256"]), path=Path(str(f["path"]))) for f in files],
    )
    with session_scope(state.factory) as db:
        return packing.record_packed(db, blobs, pack, "test:0:0", packed, "packed") is True


def _age(settings: Settings, digest: str) -> None:
    """Make a blob look an hour old, so that a collection with no grace period takes it."""
    old = time.time() - 3600
    os.utime(settings.blobs_dir / digest, (old, old))


def test_D6_publish_racing_a_collection_that_decided_to_delete(
    settings: Settings, tmp_path: Path
) -> None:
    """The collector has found the uploaded archive unlinked and is about to delete it when a
    publisher links it: the two are ordered, and the link resolves afterwards. On SQLite and
    PostgreSQL, every run: the interleaving is forced with a barrier, not left to luck."""
    client = client_for(settings)
    state = _state(client)
    build_id = submit(client)
    files = _staged_archive(tmp_path, os.urandom(2048))
    digest = str(files[0]["sha256"])
    store_artifact_files(state.blobs, files)  # uploaded by a worker whose publish comes later
    _age(settings, digest)
    gate = _PausingBlobs(settings.blobs_dir, digest)

    def sweep() -> None:
        with session_scope(state.factory) as db:
            collect(db, gate, settings.store_dir, Retention(grace_seconds=0))

    collector = threading.Thread(target=sweep)
    collector.start()
    assert gate.deleting.wait(30)  # decided: unlinked, older than the grace period
    outcome: list[bool] = []
    publisher = threading.Thread(
        target=lambda: outcome.append(_publish(state, build_id, files, state.blobs, upload=False))
    )
    publisher.start()
    publisher.join(timeout=1.0)  # before the fix it linked here, then lost the blob
    gate.release.set()
    collector.join(timeout=60)
    publisher.join(timeout=60)
    assert outcome == [True]
    assert state.blobs.exists(digest)
    archive = client.get(f"/api/v1/build/{build_id}/archive/")
    assert archive.status_code == 200 and hashlib.sha256(archive.content).hexdigest() == digest


def test_D6_publish_after_a_collection_deleted_the_upload_stores_it_again(
    settings: Settings, tmp_path: Path
) -> None:
    client = client_for(settings)
    state = _state(client)
    build_id = submit(client)
    files = _staged_archive(tmp_path, b"shared archive bytes")
    digest = str(files[0]["sha256"])

    store_artifact_files(state.blobs, files)
    _age(settings, digest)
    with session_scope(state.factory) as db:
        report = collect(db, state.blobs, settings.store_dir, Retention(grace_seconds=0))
    assert digest in report.blobs and not state.blobs.exists(digest)
    assert _publish(state, build_id, files, state.blobs, upload=False)
    assert state.blobs.exists(digest)  # stored again from the staged file before linking
    assert client.get(f"/api/v1/build/{build_id}/archive/").status_code == 200


def test_D6_gc_while_builds_publish_never_deletes_a_linked_blob(
    settings: Settings, tmp_path: Path
) -> None:
    """Sweeps with no grace period run back to back while builds publish (shared and unique
    archives); afterwards every link resolves."""
    client = client_for(settings)
    state = _state(client)
    stop = threading.Event()
    sweeps = 0

    def sweeper() -> None:
        nonlocal sweeps
        while not stop.is_set():
            with session_scope(state.factory) as db:
                collect(db, state.blobs, settings.store_dir, Retention(grace_seconds=0))
            sweeps += 1

    thread = threading.Thread(target=sweeper)
    thread.start()
    try:
        for n in range(12):
            data = os.urandom(2048) if n % 2 else b"shared archive bytes"
            build_id = submit(client, f"six=={n}.0\n", name=f"env{n % 3}")
            assert _publish(state, build_id, _staged_archive(tmp_path, data), state.blobs)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert sweeps > 3
    with session_scope(state.factory) as db:
        collect(db, state.blobs, settings.store_dir, Retention(grace_seconds=0))
        rows = db.execute(
            select(BuildArtifact.build_id, BuildArtifact.artifact_type, BuildArtifact.key)
        ).all()
    linked = [(kind, key) for _, kind, key in rows if len(key) == 64]
    assert len(linked) == 12 * 3
    missing = [(kind, key) for kind, key in linked if not state.blobs.exists(key)]
    assert missing == []
    for build_id in {row[0] for row in rows}:
        assert client.get(f"/api/v1/build/{build_id}/archive/").status_code == 200


def test_diff_route_and_registry_errors(settings: Settings) -> None:
    client = client_for(settings)
    first = submit(client)
    complete(client, first, "1.16.0")
    second = submit(client, "six==1.17.0\n")
    complete(client, second, "1.17.0")
    diff = client.get(f"/api/v1/build/{first}/diff/{second}/").json()["data"]
    assert diff["changed"] == [
        {
            "manager": "pip",
            "name": "six",
            "old_version": "1.16.0",
            "new_version": "1.17.0",
            "old_build": "",
            "new_build": "",
            "requested": True,
        }
    ]
    assert diff["added"] == [] and diff["removed"] == []
    assert client.get(f"/api/v1/build/{first}/diff/999/").status_code == 404
    version = client.get("/v2/")
    assert version.status_code == 200
    assert version.headers["docker-distribution-api-version"] == "registry/2.0"
    missing = client.get("/v2/default/env1/manifests/latest")  # these builds have no image
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert client.get("/v2/nope/nope/tags/list").json()["errors"][0]["code"] == "NAME_UNKNOWN"
    assert client.get(f"/api/v1/build/{first}/archive/").status_code == 404


def test_deleting_an_environment_deletes_its_builds_and_gc_reclaims_them(
    settings: Settings,
) -> None:
    """Issue 15 item 11: after ``env delete`` no route shows its builds, a new environment of
    the same name starts afresh, and gc frees the prefixes."""
    client = client_for(settings)
    state = _state(client)
    ids = [submit(client, f"six=={v}\n") for v in ("1.0", "2.0")]
    for build_id, version in zip(ids, ("1.0", "2.0"), strict=True):
        complete(client, build_id, version)
    keys = [_key(state, build_id) for build_id in ids]
    assert all(state.layout.prefix("default", key).is_dir() for key in keys)  # type: ignore[attr-defined]
    gone = client.delete("/api/v1/environment/default/env1/")
    assert gone.status_code == 200
    assert gone.json()["message"] == (
        "environment default/env1 deleted with its 2 build(s); "
        "garbage collection reclaims their space"
    )
    listed = client.get("/api/v1/build/", params={"namespace": "default", "name": "env1"})
    assert listed.json()["data"] == []
    for build_id in ids:
        for route in ("", "logs/", "lockfile/", "packages/"):
            assert client.get(f"/api/v1/build/{build_id}/{route}").status_code == 404
    assert client.get("/api/v1/environment/default/env1/").status_code == 404
    again = submit(client, "six==3.0\n")  # the name is free again, with no old builds
    listed = client.get("/api/v1/build/", params={"namespace": "default", "name": "env1"})
    assert [b["id"] for b in listed.json()["data"]] == [again]
    with session_scope(state.factory) as db:  # type: ignore[attr-defined]
        report = collect(db, state.blobs, settings.store_dir, Retention(grace_seconds=0))
    assert report.builds == []  # already deleted: gc only sweeps what they held
    for key in keys:
        assert not state.layout.prefix("default", key).exists()  # type: ignore[attr-defined]
