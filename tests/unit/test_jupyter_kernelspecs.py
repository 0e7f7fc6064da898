"""Kernelspec naming, marking and the launcher's choice of prefix (no server, no sockets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from envstore.errors import InvalidInput
from envstore.jupyter import kernelspecs
from envstore.jupyter.archive_cache import READY_MARK, cache_dir, cached_prefix
from envstore.jupyter.launcher import _archive_wait, _offline_prefix, reachable_prefix

URL = "http://envstore.example.org"


def _wanted(namespace: str, name: str, build_id: int = 1, *, pinned: bool = False) -> Any:
    build = {"id": build_id, "build_key": f"abc-{build_id}-{name}", "prefix": None}
    return kernelspecs._Wanted(namespace, name, build, pinned=pinned)


def test_names_are_lower_case_and_clashes_get_a_hash_suffix() -> None:
    named = kernelspecs._name_all(
        [_wanted("a-b", "c"), _wanted("a", "b-c"), _wanted("Team", "Model", 7, pinned=True)]
    )
    assert sorted(named) == [
        "envstore-a-b-c",
        named_with_suffix(named),
        "envstore-team-model--b7",
    ]
    assert named["envstore-a-b-c"].ref == "a-b/c"  # sorted first, keeps the plain name
    assert named["envstore-team-model--b7"].ref == "Team/Model@abc-7-Model"
    assert named["envstore-team-model--b7"].display_name == "Model @ build 7 (Team, envstore)"


def named_with_suffix(named: dict[str, Any]) -> str:
    clashed = [n for n in named if n.startswith("envstore-a-b-c-")]
    assert len(clashed) == 1 and len(clashed[0]) == len("envstore-a-b-c-") + 8
    return clashed[0]


def test_kernel_json_runs_the_launcher_and_carries_no_token() -> None:
    spec = kernelspecs.kernel_json(URL, _wanted("ns", "env", 3))
    assert spec["argv"] == [
        sys.executable,
        "-m",
        "envstore",
        "kernel",
        "ns/env",
        "-f",
        "{connection_file}",
    ]
    assert spec["display_name"] == "env (ns, envstore)"
    assert spec["env"]["ENVSTORE_URL"] == URL
    assert spec["env"]["ENVSTORE_KERNEL_LAST_BUILD"] == "abc-3-env"
    assert not any("TOKEN" in key for key in spec["env"])
    assert spec["metadata"]["envstore"]["url"] == URL


def test_only_own_kernelspecs_of_the_same_server_are_read(tmp_path: Path) -> None:
    def write(name: str, spec: dict[str, Any] | str) -> None:
        (tmp_path / name).mkdir()
        text = spec if isinstance(spec, str) else json.dumps(spec)
        (tmp_path / name / "kernel.json").write_text(text)

    mine = kernelspecs.kernel_json(URL, _wanted("ns", "env"))
    write("envstore-ns-env", mine)
    write("envstore-other-server", kernelspecs.kernel_json("http://other", _wanted("ns", "x")))
    write("envstore-hand-made", {"argv": ["python"], "display_name": "mine"})
    write("envstore-broken", "{not json")
    write("python3", mine)  # not named like ours: never touched
    found = kernelspecs.read_own_specs(tmp_path, URL)
    assert list(found) == ["envstore-ns-env"]
    assert kernelspecs.read_own_specs(tmp_path / "missing", URL) == {}


def test_kernels_dir_follows_jupyters_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    assert kernelspecs.kernels_dir() == tmp_path / "data" / "kernels"
    assert kernelspecs.kernels_dir(user=True) == tmp_path / "data" / "kernels"
    assert kernelspecs.kernels_dir(sys_prefix=True) == Path(sys.prefix) / "share/jupyter/kernels"
    assert kernelspecs.kernels_dir(prefix="/opt/x") == Path("/opt/x/share/jupyter/kernels")


def _prefix(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").write_text("")
    return root


def test_prefix_is_used_in_place_from_the_server_path_or_a_mount(tmp_path: Path) -> None:
    served = _prefix(tmp_path / "srv" / "envs" / "ns" / "key-1")
    build = {"prefix": str(served), "build_key": "key-1", "environment": {"namespace": "ns"}}
    assert reachable_prefix(build, {}) == served
    assert reachable_prefix(build, {"ENVSTORE_KERNEL_SOURCE": "archive"}) is None
    mounted = _prefix(tmp_path / "mnt" / "envs" / "ns" / "key-1")
    mount = {"ENVSTORE_KERNEL_STORE_DIR": str(tmp_path / "mnt")}
    assert reachable_prefix(build, mount) == mounted
    gone = {**build, "prefix": str(tmp_path / "gc-swept")}
    assert reachable_prefix(gone, {}) is None


def test_offline_start_only_for_the_last_synced_build(tmp_path: Path) -> None:
    prefix = _prefix(tmp_path / "p")
    env = {"ENVSTORE_KERNEL_LAST_BUILD": "key-1", "ENVSTORE_KERNEL_LAST_PREFIX": str(prefix)}
    env["ENVSTORE_KERNEL_CACHE"] = str(tmp_path / "cache")
    assert _offline_prefix("ns/env", "", env, "down") == prefix
    assert _offline_prefix("ns/env@key-1", "key-1", env, "down") == prefix
    assert _offline_prefix("ns/env@key-2", "key-2", env, "down") is None
    assert _offline_prefix("ns/env", "", {}, "down") is None
    # with the archive path forced, only an unpacked copy in the cache counts
    archive_only = {**env, "ENVSTORE_KERNEL_SOURCE": "archive"}
    assert _offline_prefix("ns/env", "", archive_only, "down") is None
    cached = _prefix(tmp_path / "cache" / "key-1")
    assert _offline_prefix("ns/env", "", archive_only, "down") is None  # not marked ready
    (cached / READY_MARK).write_text("digest\n")
    assert _offline_prefix("ns/env", "", archive_only, "down") == cached


def test_cache_location_and_archive_wait_settings(tmp_path: Path) -> None:
    assert cache_dir({"ENVSTORE_KERNEL_CACHE": "/c"}) == Path("/c")
    assert cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/envstore/k")
    assert cached_prefix(tmp_path, "nothing") is None
    assert _archive_wait({}) == 300.0
    assert _archive_wait({"ENVSTORE_KERNEL_ARCHIVE_WAIT": "0"}) == 0.0
    assert _archive_wait({"ENVSTORE_KERNEL_ARCHIVE_WAIT": "-5"}) == 0.0
    with pytest.raises(InvalidInput, match="not a number"):
        _archive_wait({"ENVSTORE_KERNEL_ARCHIVE_WAIT": "soon"})


class _LateArchiveClient:
    """A server whose archive appears some polls after the build COMPLETED (issue 11's flow)."""

    def __init__(self, archive: bytes, digest: str, late_polls: int) -> None:
        self.archive = archive
        self.digest = digest
        self.late = late_polls
        self.downloads = 0

    def get_build(self, build_id: int) -> dict[str, Any]:
        self.late -= 1
        artifacts = [{"artifact_type": "CONDA_PACK", "key": self.digest}] if self.late <= 0 else []
        return {"id": build_id, "build_artifacts": artifacts}

    def download_archive(self, build_id: int, write: Any) -> int:
        from envstore.errors import NotFound

        self.downloads += 1
        if self.downloads == 1:
            raise NotFound(f"build {build_id} has no CONDA_PACK artifact yet")
        write(self.archive)
        return len(self.archive)


def _tiny_archive() -> tuple[bytes, str]:
    import hashlib
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("bin/conda-unpack", "#!/bin/sh\nexit 0\n"), ("bin/python", "")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), 0o755
            tar.addfile(info, io.BytesIO(text.encode()))
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def test_launcher_waits_for_an_archive_that_trails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envstore.errors import Unavailable
    from envstore.jupyter import archive_cache

    monkeypatch.setattr(archive_cache, "_POLL_SECONDS", 0.01)
    data, digest = _tiny_archive()
    build = {"id": 5, "build_key": "key-5", "build_artifacts": []}
    client: Any = _LateArchiveClient(data, digest, late_polls=3)
    prefix = archive_cache.unpacked_build(client, build, tmp_path, wait=5, log=lambda _: None)
    assert prefix == tmp_path / "key-5" and (prefix / READY_MARK).read_text() == digest + "\n"
    assert client.downloads == 2  # the first answered 404, the second streamed it

    # bounded: a build whose archive never comes fails with a message that says what is missing
    never: Any = _LateArchiveClient(data, digest, late_polls=10**6)
    stuck = {"id": 6, "build_key": "key-6", "build_artifacts": []}
    with pytest.raises(Unavailable, match="build 6 has no relocatable archive yet"):
        archive_cache.unpacked_build(never, stuck, tmp_path, wait=0.05, log=lambda _: None)
    assert not (tmp_path / "key-6").exists()
