"""D3: the disk fills up during an install: the build FAILS ``no_space``, its staging prefix is
removed, the older environment and its artifacts stay byte-identical, and reads keep working.

The store is a 16 MiB tmpfs; the second build needs a 24 MiB wheel in the shared uv cache. The database lives outside it, so that the test is about the
store, not about SQLite on a full disk.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.local_index import LocalIndex
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_D3_disk_full_during_install(small_disk: Path, tmp_path: Path, index: LocalIndex) -> None:
    env = {
        "ENVSTORE_PYPI_INDEX_URL": index.url,
        "ENVSTORE_WORKERS": "1",
        "ENVSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'envstore.db'}",
        "ENVSTORE_BUILD_ARTIFACTS": '["LOCKFILE", "YAML", "LOGS"]',
    }
    server = ServerProcess(small_disk / "store", env=env).start()
    try:
        first = server.wait_for(server.submit("d3small==1.0\n", name="d3"), {"COMPLETED", "FAILED"})
        assert first["status"] == "COMPLETED", first["status_info"]
        prefix = Path(first["prefix"])
        before = _tree_digest(prefix)
        lockfile = server.api("GET", f"/build/{first['id']}/lockfile/").text

        second = server.submit("big-d3==1.0\n", name="d3")
        done = server.wait_for(second, {"COMPLETED", "FAILED"}, timeout=120)
        assert done["status"] == "FAILED"
        assert done["status_info"].startswith("no_space"), done["status_info"]
        assert not (small_disk / "store" / "builds" / "default" / done["build_key"]).exists()

        assert _tree_digest(prefix) == before
        assert server.api("GET", f"/build/{first['id']}/lockfile/").text == lockfile
        current = server.api("GET", "/environment/default/d3/").json()["data"]
        assert current["current_build_id"] == first["id"]
        link = small_disk / "store" / "envs" / "default" / "d3"
        assert link.resolve() == prefix.resolve()
    finally:
        server.stop()
