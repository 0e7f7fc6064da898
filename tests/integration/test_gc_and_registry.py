"""Retention and garbage collection (D6 included), the corrupted-blob route (D5), the diff
route and the registry, on an app whose builds are published through the worker services."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from envstore.db.engine import session_scope
from envstore.db.models import Build, BuildArtifact, utcnow
from envstore.services.artifacts import ensure_stored, store_artifact_files
from envstore.services.gc import Retention, collect
from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, fail, submit


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


def test_D6_gc_while_builds_publish_never_deletes_a_linked_blob(
    settings: Settings, tmp_path: Path
) -> None:
    """A sweep with no grace period races publishers; after both, every link resolves."""
    client = client_for(settings)
    state = _state(client)
    stop = threading.Event()
    sweeps = 0

    def sweeper() -> None:
        nonlocal sweeps
        while not stop.is_set():
            with session_scope(state.factory) as db:  # type: ignore[attr-defined]
                collect(db, state.blobs, settings.store_dir, Retention(grace_seconds=0))
            sweeps += 1

    thread = threading.Thread(target=sweeper)
    thread.start()
    try:
        for n in range(12):
            staged = tmp_path / f"archive-{n}"
            staged.write_bytes(os.urandom(2048) if n % 2 else b"shared archive bytes")
            digest = hashlib.sha256(staged.read_bytes()).hexdigest()
            files = [
                {
                    "artifact_type": "CONDA_PACK",
                    "path": str(staged),
                    "sha256": digest,
                    "size": staged.stat().st_size,
                }
            ]
            stored = store_artifact_files(state.blobs, files)  # type: ignore[attr-defined]
            time.sleep(0.01)  # give the sweeper a window between upload and link
            build_id = submit(client, f"six=={n}.0\n", name=f"env{n % 3}")
            complete(client, build_id, f"{n}.0")
            with session_scope(state.factory) as db:  # type: ignore[attr-defined]
                db.add(
                    BuildArtifact(
                        build_id=build_id,
                        artifact_type="CONDA_PACK",
                        key=stored[0].digest,
                        size=stored[0].size,
                    )
                )
                db.commit()
            ensure_stored(state.blobs, files, [])  # type: ignore[attr-defined]
    finally:
        stop.set()
        thread.join(timeout=60)
    assert sweeps > 3
    with session_scope(state.factory) as db:  # type: ignore[attr-defined]
        collect(db, state.blobs, settings.store_dir, Retention(grace_seconds=0))
        rows = db.execute(
            select(BuildArtifact.build_id, BuildArtifact.artifact_type, BuildArtifact.key)
        ).all()
    linked = [(kind, key) for _, kind, key in rows if len(key) == 64]
    assert len(linked) == 12 * 3
    missing = [(kind, key) for kind, key in linked if not state.blobs.exists(key)]  # type: ignore[attr-defined]
    assert missing == []
    for build_id, _, _ in rows:
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
