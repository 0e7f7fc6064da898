"""envstore environments as Jupyter kernels, through a real ``envstore serve``, the
``envstore`` CLI, ``jupyter_client`` and ``ipykernel`` (docs/jupyter.md).

One server holds three environments, built once for the whole module: ``default/kern`` (PyPI,
the real ``ipykernel`` from PyPI), ``team/ckern`` (conda: the generated channel's host-python
wrapper, ``ipykernel`` through ``pip:``, installed from the same uv cache) and ``default/plain``
(conda, no ipykernel). ``root`` is an administrator; ``vera`` holds only the default ``default/*``
viewer binding of signed-in users.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from envstore.cli.client import EnvstoreClient
from envstore.errors import InvalidInput
from envstore.jupyter.archive_cache import READY_MARK, unpacked_build
from envstore.jupyter.launcher import kernel_prefix
from envstore.testing import demo_channel
from tests.acceptance.jupyter_server_support import JupyterServer
from tests.acceptance.jupyter_support import (
    PREFIX_PROBE,
    Person,
    add_person,
    kernel_names,
    run_code,
    running_kernel,
    submit,
)
from tests.support.server import ServerProcess
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(900)]

IPYKERNEL = "ipykernel==7.4.0"


@dataclass
class World:
    server: ServerProcess
    root: Person
    vera: Person
    kern: dict[str, Any]
    ckern: dict[str, Any]
    plain: dict[str, Any]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("jupyter")
    channel = demo_channel(base / "channel")
    env = {
        "ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}",
        # kernels need the archive, not the OCI image (which would double each build's output)
        "ENVSTORE_BUILD_ARTIFACTS": '["LOCKFILE", "YAML", "LOGS", "CONDA_PACK"]',
    }
    server = ServerProcess(base / "store", env=env).start()
    try:
        root = add_person(server, "root", base / "root", admin=True)
        vera = add_person(server, "vera", base / "vera")
        conda_spec = yaml.safe_dump(
            {
                "name": "ckern",
                "channels": [channel.url],
                "dependencies": ["python", "app", {"pip": [IPYKERNEL]}],
            }
        )
        # The PyPI build fills the uv cache the conda build's pip: section then links from.
        kern = submit(root, "default", "kern", IPYKERNEL + "\n")
        ckern = submit(root, "team", "ckern", conda_spec)
        plain_spec = yaml.safe_dump(
            {"name": "plain", "channels": [channel.url], "dependencies": ["app"]}
        )
        plain = submit(root, "default", "plain", plain_spec)
        yield World(server, root, vera, kern, ckern, plain)
    finally:
        server.stop()


def _sync(person: Person, directory: Path, *args: str, code: int = 0) -> str:
    result = person.cli("kernels", "sync", "--prefix", str(directory), *args, code=code)
    return result.stdout + result.stderr


def _kernels_dir(root: Path) -> Path:
    return root / "share" / "jupyter" / "kernels"


def test_environments_with_ipykernel_become_kernels_that_run_in_their_build(
    world: World, tmp_path: Path
) -> None:
    _sync(world.root, tmp_path)
    kernels = _kernels_dir(tmp_path)
    assert kernel_names(kernels) == {
        "envstore-default-kern": "kern (default, envstore)",
        "envstore-team-ckern": "ckern (team, envstore)",
    }
    spec = json.loads((kernels / "envstore-default-kern" / "kernel.json").read_text())
    assert spec["argv"][-4:] == ["kernel", "default/kern", "-f", "{connection_file}"]
    assert spec["metadata"]["envstore"]["build_key"] == world.kern["build_key"]
    assert "ENVSTORE_TOKEN" not in spec["env"]  # kernelspecs may be readable by others
    assert (kernels / "envstore-default-kern" / "logo-64x64.png").stat().st_size > 0

    # a kernel of each kind runs code, with sys.prefix the build's (not this interpreter's)
    for name, build in (
        ("envstore-default-kern", world.kern),
        ("envstore-team-ckern", world.ckern),
    ):
        with running_kernel(kernels, name, world.root.environ()) as kernel:
            assert run_code(kernel, PREFIX_PROBE) == build["prefix"]
            assert run_code(kernel, "import ipykernel; print(ipykernel.__version__)") == "7.4.0"

    # a second sync changes nothing and says how many kernels there are
    assert "2 envstore kernel(s)" in _sync(world.root, tmp_path)


def test_viewer_gets_kernels_only_for_what_they_may_read(world: World, tmp_path: Path) -> None:
    _sync(world.vera, tmp_path)
    kernels = _kernels_dir(tmp_path)
    assert list(kernel_names(kernels)) == ["envstore-default-kern"]
    # a kernelspec copied from someone else does not let vera start team/ckern
    connection = tmp_path / "kernel.json"
    connection.write_text("{}")
    refused = world.vera.cli("kernel", "team/ckern", "-f", str(connection), code=2)
    assert "may not read" in refused.stderr


def test_archive_path_without_shared_filesystem_is_verified_and_cached(
    world: World, tmp_path: Path
) -> None:
    _sync(world.root, tmp_path)
    kernels = _kernels_dir(tmp_path)
    cache = tmp_path / "kc"
    env = world.root.environ(ENVSTORE_KERNEL_SOURCE="archive", ENVSTORE_KERNEL_CACHE=str(cache))
    unpacked = cache / world.kern["build_key"]
    with running_kernel(kernels, "envstore-default-kern", env) as kernel:
        assert run_code(kernel, PREFIX_PROBE) == str(unpacked)
        assert run_code(kernel, "import ipykernel, sys; print(ipykernel.__file__)").startswith(
            str(unpacked)
        )
    marker = (unpacked / READY_MARK).stat()
    # the next start uses the cache: the launcher picks it without downloading or unpacking
    with EnvstoreClient(world.root.url, token=world.root.token) as client:
        prefix, build = kernel_prefix(client, "default/kern", env)
    assert prefix == unpacked and build["id"] == world.kern["id"]
    again = (unpacked / READY_MARK).stat()
    assert (again.st_ino, again.st_mtime_ns) == (marker.st_ino, marker.st_mtime_ns)
    assert not list(cache.glob(".*.tar.gz"))  # the download is not kept

    # an archive whose bytes differ from the recorded digest is never unpacked
    forged = dict(world.ckern)
    forged["build_artifacts"] = [{"artifact_type": "CONDA_PACK", "key": "0" * 64}]
    client = EnvstoreClient(world.root.url, token=world.root.token)
    with client, pytest.raises(InvalidInput, match="does not match its recorded digest"):
        unpacked_build(client, forged, cache, wait=0, log=lambda _: None)
    assert not (cache / world.ckern["build_key"] / READY_MARK).exists()


def test_pinned_kernel_keeps_its_build_after_the_environment_moves_on(
    world: World, tmp_path: Path
) -> None:
    first = world.kern
    _sync(world.root, tmp_path, "--pin", f"default/kern@{first['build_key']}")
    kernels = _kernels_dir(tmp_path)
    pinned = f"envstore-default-kern--b{first['id']}"
    assert kernel_names(kernels)[pinned] == f"kern @ build {first['id']} (default, envstore)"

    second = submit(world.root, "default", "kern", f"{IPYKERNEL}\nsix==1.16.0\n")
    try:
        # the periodic sync (no --pin) keeps the pinned kernel and moves the unpinned one on
        _sync(world.root, tmp_path)
        assert pinned in kernel_names(kernels)
        env = world.root.environ()
        with running_kernel(kernels, pinned, env) as kernel:
            assert run_code(kernel, PREFIX_PROBE) == first["prefix"]
        unpinned = json.loads((kernels / "envstore-default-kern" / "kernel.json").read_text())
        assert unpinned["metadata"]["envstore"]["build_id"] == second["id"]
        with EnvstoreClient(world.root.url, token=world.root.token) as client:
            assert kernel_prefix(client, "default/kern", env)[0] == Path(second["prefix"])

        # a pin by date names the build that was current then (the second one, today)
        today = time.strftime("%Y-%m-%d", time.gmtime())
        _sync(world.root, tmp_path, "--pin", f"default/kern@{today}")
        assert f"envstore-default-kern--b{second['id']}" in kernel_names(kernels)

        # once the pinned build is deleted, its kernel says so and the next sync removes it
        with world.root.api() as api:
            assert api.delete(f"/build/{first['id']}/").status_code == 200
        connection = tmp_path / "connection.json"
        connection.write_text("{}")
        gone = world.root.cli(
            "kernel", f"default/kern@{first['build_key']}", "-f", str(connection), code=2
        )
        assert "deleted or garbage-collected" in gone.stderr
        assert f"removed {kernels / pinned}" in _sync(world.root, tmp_path)
    finally:
        with world.root.api() as api:
            api.put("/environment/default/kern/", json={"build_id": second["id"]})


def test_bad_pins_are_refused_before_anything_is_written(world: World, tmp_path: Path) -> None:
    out = _sync(world.root, tmp_path, "--pin", "default/kern", code=2)
    assert "name a build" in out
    out = _sync(world.root, tmp_path, "--pin", f"default/plain@{world.plain['id']}", code=2)
    assert f"build {world.plain['id']} has no ipykernel" in out
    out = _sync(world.root, tmp_path, "--pin", "default/nothing@2020-01-01", code=2)
    assert "default/nothing" in out
    out = _sync(world.vera, tmp_path, "--pin", f"team/ckern@{world.ckern['id']}", code=2)
    assert "not authorized" in out
    assert not _kernels_dir(tmp_path).exists()
    out = world.root.cli("kernels", "sync", "--user", "--sys-prefix", code=2).stderr
    assert "choose one of" in out


def test_jupyter_server_lists_starts_and_runs_envstore_kernels(
    world: World, tmp_path: Path
) -> None:
    env = world.root.environ(ENVSTORE_KERNELS_SYNC_INTERVAL="1")
    with JupyterServer(tmp_path, env) as jupyter:
        specs = jupyter.wait_for_kernelspec("envstore-default-kern")
        assert specs["envstore-team-ckern"]["spec"]["display_name"] == "ckern (team, envstore)"
        assert "envstore-default-plain" not in specs
        kernel_id = jupyter.start_kernel("envstore-default-kern")
        with world.root.api() as api:
            current = api.get("/resolve/default/kern/").json()["data"]["prefix"]
        assert jupyter.run_code(kernel_id, PREFIX_PROBE) == current
        # the extension re-syncs by itself: a removed kernelspec comes back
        kernels = Path(env["JUPYTER_DATA_DIR"]) / "kernels"
        for entry in (kernels / "envstore-team-ckern").iterdir():
            entry.unlink()
        (kernels / "envstore-team-ckern").rmdir()
        jupyter.wait_for_kernelspec("envstore-team-ckern")


def test_envstore_down_leaves_the_kernels_and_they_still_start(
    world: World, tmp_path: Path
) -> None:
    # the server stays up for the other tests; its address is what goes away
    with TcpProxy("127.0.0.1", world.server.port) as proxy:
        root = dataclasses.replace(world.root, url=f"http://127.0.0.1:{proxy.port}")
        _sync(root, tmp_path)
        kernels = _kernels_dir(tmp_path)
        before = {p.name: (p / "kernel.json").read_text() for p in kernels.iterdir()}
        assert sorted(before) == ["envstore-default-kern", "envstore-team-ckern"]
        proxy.block()
        out = _sync(root, tmp_path, code=3)
        assert len(out.strip().splitlines()) == 1 and "left as they are" in out
        assert {p.name: (p / "kernel.json").read_text() for p in kernels.iterdir()} == before
        # Jupyter still works: the last synced build starts, with one warning
        with running_kernel(kernels, "envstore-team-ckern", root.environ()) as kernel:
            assert run_code(kernel, PREFIX_PROBE) == world.ckern["prefix"]
