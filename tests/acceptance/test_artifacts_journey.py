"""Build artifacts end to end against a real ``envstore serve`` (issue 4).

One PyPI environment built twice (real PyPI) and one conda environment (a local channel from
``envstore.testing``): every artifact is downloadable through the API and the CLI, the archive
relocates and runs somewhere else, skopeo inspects and copies the image from the server's
``/v2/`` registry and the copied layer unpacks to a working prefix, the diff of build 1 -> 2 is
right, and ``envstore gc`` after a retention change frees exactly the expired build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard

from envstore.testing import ChannelBuilder, demo_channel
from tests.acceptance.conftest import Cli
from tests.support.server import ENVSTORE, ServerProcess

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(900)]

FILE_ARTIFACTS = {"LOCKFILE", "YAML", "LOGS", "CONDA_PACK", "DOCKER_MANIFEST", "DIRECTORY"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("artifacts-server")
    env = {
        "ENVSTORE_WORKERS": "2",
        "ENVSTORE_DEVELOPMENT_MODE": "true",
        # This journey is about artifacts, not permissions: anonymous callers may do anything.
        "ENVSTORE_ANONYMOUS_ROLE_BINDINGS": '{"*/*": ["admin"]}',
    }
    process = ServerProcess(root / "store", env=env).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> ChannelBuilder:
    return demo_channel(tmp_path_factory.mktemp("conda-channel"))


@pytest.fixture(scope="module")
def builds(server: ServerProcess, channel: ChannelBuilder) -> dict[str, int]:
    """PyPI build 1 (six 1.16.0), PyPI build 2 (six 1.17.0 + iniconfig), one conda build."""
    first = server.submit("six==1.16.0\n", name="tiny")
    server.wait_for(first, {"COMPLETED", "FAILED"}, timeout=300)
    second = server.submit("six==1.17.0\niniconfig==2.0.0\n", name="tiny")
    conda_spec = (
        f"name: sci\nchannels: [{channel.url}]\n"
        "dependencies: [app, python, {pip: [six==1.16.0]}]\n"
    )
    conda = server.submit(conda_spec, name="sci")
    ids = {"pypi1": first, "pypi2": second, "conda": conda}
    for build_id in ids.values():
        build = server.wait_for(build_id, {"COMPLETED", "FAILED"}, timeout=300)
        assert build["status"] == "COMPLETED", build["status_info"]
    # Usable before packed: the archive and image come after COMPLETED (issue 11); the
    # archive route waits for them, as the conda-store CLI's `run` relies on.
    for build_id in ids.values():
        assert _get(server, f"/api/v1/build/{build_id}/archive/?wait=120").content
        assert server.build(build_id)["artifacts_status"] == "COMPLETED"
    return ids


def _get(server: ServerProcess, path: str, **kwargs: Any) -> httpx.Response:
    response = httpx.get(f"{server.url}{path}", timeout=60, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response


def _relocate_and_probe(root: Path, probe: str) -> str:
    """Run the unpack step in ``root``, then ``probe`` in the activated environment."""
    unpack = subprocess.run([root / "bin/conda-unpack"], capture_output=True, text=True)
    assert unpack.returncode == 0, unpack.stderr
    script = f'. "{root}/bin/activate" "{root}" && {probe}'
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_artifact_is_listed_and_downloadable(
    server: ServerProcess, builds: dict[str, int], cli: Cli, tmp_path: Path
) -> None:
    for build_id in builds.values():
        kinds = {a["artifact_type"] for a in server.build(build_id)["build_artifacts"]}
        assert kinds == FILE_ARTIFACTS
        for route in ("lockfile/", "yaml/", "logs/", "archive/"):
            assert _get(server, f"/api/v1/build/{build_id}/{route}").content
        for kind in ("lockfile", "yaml", "logs", "archive"):
            target = tmp_path / f"{build_id}-{kind}"
            cli("artifact", str(build_id), kind, "-o", str(target))
            assert target.stat().st_size > 0
    archive = _get(server, f"/api/v1/build/{builds['pypi1']}/archive/")
    assert archive.headers["content-type"] == "application/gzip"
    assert (tmp_path / f"{builds['pypi1']}-archive").read_bytes() == archive.content
    explicit = _get(server, f"/api/v1/build/{builds['conda']}/explicit/").text
    assert explicit.splitlines()[1] == "@EXPLICIT" and "/app-1.0-" in explicit
    reference = cli("artifact", str(builds["pypi2"]), "docker").stdout.strip()
    assert reference == server.build(builds["pypi2"])["build_key"].join(
        [f"127.0.0.1:{server.port}/default/tiny:", ""]
    )


@pytest.mark.parametrize(
    ("which", "probe", "expected"),
    [
        ("pypi1", 'python -c "import six, sys; print(six.__version__, sys.prefix)"', "1.16.0"),
        (
            "conda",
            'app && python -c "import six, sys; print(six.__version__, sys.prefix)"',
            "1.16.0",
        ),
    ],
)
def test_archive_relocates_and_runs(
    server: ServerProcess,
    builds: dict[str, int],
    tmp_path: Path,
    which: str,
    probe: str,
    expected: str,
) -> None:
    build_id = builds[which]
    tarball = tmp_path / "env.tar.gz"
    tarball.write_bytes(_get(server, f"/api/v1/build/{build_id}/archive/").content)
    root = tmp_path / "somewhere" / "else"
    root.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(root, filter="tar")
    output = _relocate_and_probe(root, probe)
    assert output.splitlines()[-1] == f"{expected} {root}"
    original = str(server.store / "builds")
    leftovers = subprocess.run(
        ["grep", "-rlI", original, str(root)], capture_output=True, text=True
    )
    assert leftovers.stdout == ""


@pytest.mark.skipif(
    shutil.which("skopeo") is None and os.environ.get("CI") != "true",
    reason="skopeo is not installed (.ci/run installs it; under CI=true this test must run)",
)
def test_skopeo_inspects_and_copies_the_image(
    server: ServerProcess, builds: dict[str, int], tmp_path: Path
) -> None:
    build = server.build(builds["pypi2"])
    image = f"docker://127.0.0.1:{server.port}/default/tiny"
    manifest = _get(server, "/v2/default/tiny/manifests/latest")
    assert manifest.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
    digest = manifest.headers["docker-content-digest"]
    tags = _get(server, "/v2/default/tiny/tags/list").json()["tags"]
    assert build["build_key"] in tags and "latest" in tags
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"{image}:{build['build_key']}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inspected.returncode == 0, inspected.stderr
    info = json.loads(inspected.stdout)
    assert info["Digest"] == digest
    assert (
        "PATH=/opt/env/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        in info["Env"]
    )
    layout = tmp_path / "oci"
    copied = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", f"{image}:latest", f"oci:{layout}:tiny"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert copied.returncode == 0, copied.stderr
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    assert manifest_digest == digest  # copied byte for byte: same digest
    copied_manifest = json.loads((layout / "blobs/sha256" / manifest_digest[7:]).read_text())
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    for layer in copied_manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        with (layout / "blobs/sha256" / layer["digest"][7:]).open("rb") as compressed:
            plain = zstandard.ZstdDecompressor().stream_reader(compressed)
            with tarfile.open(fileobj=plain, mode="r|") as tar:
                tar.extractall(rootfs, filter="tar")
    output = _relocate_and_probe(
        rootfs / "opt/env", 'python -c "import six, iniconfig; print(six.__version__)"'
    )
    assert output.splitlines()[-1] == "1.17.0"


def test_diff_between_builds(server: ServerProcess, builds: dict[str, int], cli: Cli) -> None:
    first, second = builds["pypi1"], builds["pypi2"]
    diff = _get(server, f"/api/v1/build/{first}/diff/{second}/").json()["data"]
    assert [(e["name"], e["version"], e["requested"]) for e in diff["added"]] == [
        ("iniconfig", "2.0.0", True)
    ]
    assert diff["removed"] == []
    assert [(e["name"], e["old_version"], e["new_version"]) for e in diff["changed"]] == [
        ("six", "1.16.0", "1.17.0")
    ]
    printed = cli("diff", str(first), str(second)).stdout.splitlines()
    assert "+ iniconfig 2.0.0 (pip, requested)" in printed
    assert "~ six 1.16.0 -> 1.17.0 (pip, requested)" in printed
    log = _get(server, f"/api/v1/build/{second}/logs/").text
    assert f"diff build {first} -> build {second}:" in log
    assert "  ~ six 1.16.0 -> 1.17.0 (pip, requested)" in log


def _gc(server: ServerProcess, *args: str, **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [ENVSTORE, "gc", *args],
        env={**server.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def test_gc_after_retention_change_frees_exactly_the_expired_build(
    server: ServerProcess, builds: dict[str, int]
) -> None:
    """Runs last in this module: it deletes build 1."""
    first = server.build(builds["pypi1"])
    archive_digest = next(
        a["key"] for a in first["build_artifacts"] if a["artifact_type"] == "CONDA_PACK"
    )
    before = {u["namespace"]: u for u in _get(server, "/api/v1/usage/").json()["data"]}
    no_rules = _gc(server, "--dry-run", ENVSTORE_GC_GRACE_SECONDS="0")
    assert no_rules["builds"] == []  # no retention rule set: nothing expires
    rules = {"ENVSTORE_GC_KEEP_LAST": "1", "ENVSTORE_GC_GRACE_SECONDS": "0"}
    dry = _gc(server, "--dry-run", **rules)
    assert dry["builds"] == [builds["pypi1"]]
    assert server.api("GET", f"/build/{builds['pypi1']}/archive/").status_code == 200
    report = _gc(server, **rules)
    assert report["builds"] == [builds["pypi1"]]
    assert report["prefix_bytes"] > 0 and report["blob_bytes"] > 0
    assert server.api("GET", f"/build/{builds['pypi1']}/").status_code == 404
    for kept in (builds["pypi2"], builds["conda"]):
        assert server.api("GET", f"/build/{kept}/archive/").status_code == 200
    assert not (server.store / "blobs/sha256" / archive_digest.split(":")[-1]).exists()
    after = {u["namespace"]: u for u in _get(server, "/api/v1/usage/").json()["data"]}
    assert after["default"]["num_builds"] == before["default"]["num_builds"] - 1
    assert after["default"]["storage"] == before["default"]["storage"] - first["size"]
    assert first["build_key"] not in _get(server, "/v2/default/tiny/tags/list").json()["tags"]
    assert _gc(server, **rules)["builds"] == []  # idempotent
