"""A13: the OCI registry challenges like a distribution registry, so real clients log in.

Anonymous: 401 + ``WWW-Authenticate: Basic realm="envstore"`` + ``UNAUTHORIZED``; a user name
and an envstore API token as password (``skopeo login``, ``--src-creds``): the image; another
user's namespace: ``403 DENIED``, the same whether the repository exists or not. Real skopeo
against a real ``envstore serve``; the images are real OCI images of a one-file prefix.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, make_user, submit
from tests.security.conftest import migrated_sqlite
from tests.support.server import ServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("skopeo") is None and os.environ.get("CI") != "true",
        reason="skopeo is not installed (.ci/run installs it; under CI=true this test must run)",
    ),
]


@dataclass
class Registry:
    server: ServerProcess
    bob: str
    alice: str

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def get(self, path: str, user: str | None = None, token: str | None = None) -> httpx.Response:
        headers = {}
        if token is not None:
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            headers["authorization"] = f"Basic {basic}"
        return httpx.get(f"{self.server.url}{path}", headers=headers, timeout=30)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    client = client_for(settings, user=None)
    bob, alice = make_user(client, "bob"), make_user(client, "alice")
    client.headers["Authorization"] = f"Bearer {bob}"
    complete(client, submit(client, name="app", namespace="bob"), image=True)
    client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]
    env = {
        "ENVSTORE_DATABASE_URL": settings.resolved_database_url,
        "ENVSTORE_WORKERS": "0",
        "ENVSTORE_ANONYMOUS_ROLE_BINDINGS": "{}",  # closed, as a real installation is
    }
    server = ServerProcess(settings.store_dir, env=env).start()
    try:
        yield Registry(server, bob, alice)
    finally:
        server.stop()


def _skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)


def _is_challenge(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == 'Basic realm="envstore"'
    assert answer.headers["docker-distribution-api-version"] == "registry/2.0"
    assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_A13_anonymous_and_bad_tokens_are_challenged(registry: Registry) -> None:
    for path in (
        "/v2/",
        "/v2/bob/app/manifests/latest",
        "/v2/bob/app/tags/list",
        "/v2/nobody/nothing/manifests/latest",  # a missing repository answers the same
        f"/v2/bob/app/blobs/sha256:{'0' * 64}",
    ):
        _is_challenge(registry.get(path))
        _is_challenge(registry.get(path, "bob", "envs_" + "x" * 43))  # unknown token
    assert registry.get("/v2/", "bob", registry.bob).status_code == 200  # docker login's check


def test_A13_another_namespace_is_denied(registry: Registry) -> None:
    there = registry.get("/v2/bob/app/manifests/latest", "alice", registry.alice)
    missing = registry.get("/v2/bob/nothing/manifests/latest", "alice", registry.alice)
    for answer in (there, missing):
        assert answer.status_code == 403
        assert answer.json()["errors"][0]["code"] == "DENIED"
        assert "www-authenticate" not in answer.headers
    assert registry.get("/v2/bob/app/tags/list", "bob", registry.bob).json()["tags"][-1] == "latest"


def test_A13_skopeo_copies_with_a_token_and_not_without(registry: Registry, tmp_path: Path) -> None:
    image = f"docker://{registry.host}/bob/app:latest"
    manifest = registry.get("/v2/bob/app/manifests/latest", "bob", registry.bob)
    layout = tmp_path / "oci"
    copied = _skopeo(
        "copy",
        "--src-creds",
        f"bob:{registry.bob}",
        "--src-tls-verify=false",
        image,
        f"oci:{layout}:app",
    )
    assert copied.returncode == 0, copied.stderr
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == manifest.headers["docker-content-digest"]

    anonymous = _skopeo("copy", "--src-tls-verify=false", image, f"oci:{tmp_path / 'a'}:app")
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower() or "401" in anonymous.stderr
    alice = _skopeo(
        "copy",
        "--src-creds",
        f"alice:{registry.alice}",
        "--src-tls-verify=false",
        image,
        f"oci:{tmp_path / 'b'}:app",
    )
    assert alice.returncode != 0 and "denied" in alice.stderr.lower(), alice.stderr


def test_A13_skopeo_login_keeps_the_token_for_later_pulls(
    registry: Registry, tmp_path: Path
) -> None:
    authfile = str(tmp_path / "auth.json")
    wrong = _skopeo(
        "login",
        "--authfile",
        authfile,
        "--tls-verify=false",
        "-u",
        "bob",
        "-p",
        "nope-nope",
        registry.host,
    )
    assert wrong.returncode != 0
    login = _skopeo(
        "login",
        "--authfile",
        authfile,
        "--tls-verify=false",
        "-u",
        "bob",
        "-p",
        registry.bob,
        registry.host,
    )
    assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stderr
    inspected = _skopeo(
        "inspect",
        "--authfile",
        authfile,
        "--tls-verify=false",
        f"docker://{registry.host}/bob/app:latest",
    )
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Name"] == f"{registry.host}/bob/app"
