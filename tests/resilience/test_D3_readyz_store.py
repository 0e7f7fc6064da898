"""D3 (readiness): ``/readyz`` answers 503 while the store's disk is full or read-only, and 200
again once it can take writes; ``/livez`` stays 200 and reads keep working meanwhile.

The store is a 4 MiB tmpfs (mounting needs root, as CI runs), the database lives outside it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from envstore.db.engine import make_engine, upgrade
from envstore.settings import load_settings
from tests.integration.helpers import client_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("mounting a tmpfs needs root, which CI has")
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path, leave: int) -> None:
    """Write ``path`` until the disk under it has about ``leave`` bytes free, or is full."""
    with path.open("wb") as handle:
        try:
            while True:
                stats = os.statvfs(path.parent)
                free = stats.f_bavail * stats.f_frsize
                if free <= leave:
                    return
                handle.write(b"\1" * min(65536, max(4096, free - leave)))
                handle.flush()
        except OSError:
            return


def test_D3_readyz_tells_when_the_store_cannot_take_writes(
    small_disk: Path, tmp_path: Path
) -> None:
    settings = load_settings(
        store_dir=small_disk / "store",
        database_url=f"sqlite:///{tmp_path / 'outside.db'}",
        workers=0,
        ready_min_free_bytes=1024 * 1024,
    )
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    engine.dispose()
    settings.store_dir.mkdir()
    client = client_for(settings)
    assert client.get("/readyz").status_code == 200

    ballast = settings.store_dir / "ballast"
    _fill(ballast, leave=512 * 1024)  # below the 1 MiB floor, but writes still succeed
    low = client.get("/readyz")
    assert low.status_code == 503 and "store disk is full" in low.json()["message"]
    assert low.headers["retry-after"] == "30"
    _fill(settings.store_dir / "more", leave=0)  # nothing left: the probe write fails too
    full = client.get("/readyz")
    assert full.status_code == 503 and "not writable" in full.json()["message"]
    assert client.get("/livez").status_code == 200
    assert client.get("/api/v1/environment/").status_code == 200  # reads go on

    ballast.unlink()
    (settings.store_dir / "more").unlink()
    assert client.get("/readyz").status_code == 200

    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    readonly = client.get("/readyz")
    assert readonly.status_code == 503
    assert "not writable" in readonly.json()["message"]
    assert "Read-only file system" in readonly.json()["message"]
