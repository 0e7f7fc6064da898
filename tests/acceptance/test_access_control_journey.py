"""Access control through a real ``envstore serve`` and the ``envstore`` CLI.

Two users share a team namespace: alice is its editor, bob its viewer. Bob can list, download
the lockfile and ``run``, but not submit or roll back; a token he revokes stops working on the
very next request. Builds are real uv builds against a local index on loopback (offline).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.local_index import local_index
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ENVSTORE = str(Path(sys.executable).parent / "envstore")


@dataclass
class User:
    """Runs ``envstore`` as one person: their own config directory (and so their own token)."""

    name: str
    url: str
    home: Path
    store: Path

    def __call__(
        self, *args: str, code: int | None = 0, stdin: str | None = None, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "ENVSTORE_URL": self.url,
            "ENVSTORE_STORE_DIR": str(self.store),
            "XDG_CONFIG_HOME": str(self.home),
            "COLUMNS": "200",
        }
        env.pop("ENVSTORE_TOKEN", None)
        if token is not None:
            env["ENVSTORE_TOKEN"] = token
        result = subprocess.run(
            [ENVSTORE, *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if code is not None:
            assert result.returncode == code, (
                f"{self.name}: envstore {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        assert "Traceback" not in result.stderr
        return result

    def login(self) -> None:
        self("login", "--username", self.name, "--password-stdin", stdin=f"pw-{self.name}-123\n")
        path = self.home / "envstore" / "token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with local_index() as index:
        env = {"ENVSTORE_PYPI_INDEX_URL": index.url, "ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}"}
        process = ServerProcess(tmp_path / "store", env=env).start()
        try:
            yield process
        finally:
            process.stop()


def test_team_editor_and_viewer_journey(server: ServerProcess, tmp_path: Path) -> None:
    assert "no administrator exists yet" in server.log.read_text()
    people = {
        name: User(name, server.url, tmp_path / f"home-{name}", server.store)
        for name in ("root", "alice", "bob")
    }
    root, alice, bob = people["root"], people["alice"], people["bob"]
    root("user", "add", "root", "--admin", "--password-stdin", stdin="pw-root-123\n")
    alice("user", "add", "alice", "--password-stdin", stdin="pw-alice-123\n")
    bob("user", "add", "bob", "--password-stdin", stdin="pw-bob-123\n")
    for person in people.values():
        person.login()

    # anonymous callers see nothing and may submit nothing
    assert httpx.get(f"{server.url}/api/v1/environment/").json()["count"] == 0
    # the admin makes the team namespace: alice editor, bob viewer (REST, as the UI would)
    token = json.loads((root.home / "envstore" / "token").read_text())[server.url]
    admin = httpx.Client(
        base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}
    )
    assert admin.post("/namespace/team/").status_code == 200
    mappings = [{"entity": "alice", "role": "editor"}, {"entity": "bob", "role": "viewer"}]
    assert admin.put("/namespace/team/", json={"role_mappings": mappings}).status_code == 200

    spec = tmp_path / "tools.txt"
    spec.write_text("demo-pkg==1.0\n")
    first = _create(alice, spec)
    spec.write_text("demo-pkg==2.0\n")
    second = _create(alice, spec)
    assert second != first

    # bob, the viewer: list, lockfile, run
    assert "team/tools" in bob("env", "list").stdout
    lock = bob("lockfile", "team/tools").stdout
    assert "demo-pkg" in lock and re.search(r"version: '?2\.0'?", lock), lock
    probe = "import demo_pkg; print(demo_pkg.VERSION)"
    assert bob("run", "team/tools", "--", "python", "-c", probe).stdout.strip() == "2.0"
    # ...but not submit, roll back or cancel
    refused = bob("env", "create", "-f", str(spec), "-n", "team", code=2)
    assert "request not authorized" in refused.stderr
    refused = bob("env", "rollback", "team/tools", str(first), code=2)
    assert "request not authorized" in refused.stderr
    # alice, the editor, may roll back
    alice("env", "rollback", "team/tools", str(first))
    assert bob("run", "team/tools", "--", "python", "-c", probe).stdout.strip() == "1.0"

    # a token bob makes and revokes stops working on the very next request
    made = bob("token", "create", "--name", "laptop", "--expires-in", "1")
    secret = made.stdout.strip()
    assert secret.startswith("envs_")
    assert "team/tools" in bob("env", "show", "team/tools", token=secret).stdout
    listed = json.loads(bob("token", "list", "--json").stdout)
    mine = next(t for t in listed if t["name"] == "laptop")
    bob("token", "revoke", str(mine["id"]))
    gone = bob("env", "show", "team/tools", token=secret, code=2)
    assert "request not authorized" in gone.stderr
    # a token narrowed to viewer cannot be widened
    wider = bob("token", "create", "--role", "team/*=editor", code=2)
    assert "wider" in wider.stderr


def _create(user: User, spec: Path) -> int:
    result = user("env", "create", "-f", str(spec), "-n", "team", "--wait")
    match = re.search(r"^build (\d+) queued for ", result.stdout, re.MULTILINE)
    assert match, result.stdout
    return int(match.group(1))
