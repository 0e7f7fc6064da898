"""Helpers for API tests: a client on a fresh app, and builds put into a given state through
the same worker services the real workers use."""

from __future__ import annotations

from fastapi.testclient import TestClient

from envstore.api.app import create_app
from envstore.artifacts.stage import produce_artifacts
from envstore.core.builds import BuildStatus
from envstore.db.engine import session_scope
from envstore.db.models import BuildArtifact
from envstore.pipeline.contract import BuildResult, PackageInfo
from envstore.services import worker as svc
from envstore.services.access import principal_for_user
from envstore.services.artifacts import store_artifact_files
from envstore.services.tokens import TokenRequest, create_token
from envstore.services.users import add_user, find_user
from envstore.settings import Settings

LOCK = """version: 1
metadata:
  platforms: [linux-64]
package:
- name: six
  version: 1.16.0
  manager: pip
  platform: linux-64
  url: https://files.example/six-1.16.0-py2.py3-none-any.whl
  hash: {sha256: 8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254}
"""


_OPEN_APPS: list[TestClient] = []


def close_apps() -> None:
    """Give back the database connections of the apps ``client_for`` made (their lifespan,
    which would dispose the engine, never runs without ``with TestClient(...)``); a full run
    otherwise holds ~100 idle PostgreSQL connections and meets the server's limit."""
    while _OPEN_APPS:
        client = _OPEN_APPS.pop()
        client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]


def client_for(settings: Settings, *, user: str | None = "admin") -> TestClient:
    """A client on a fresh app, signed in with a token of ``user`` (an administrator whose
    token's primary namespace is ``default``), or anonymous for ``user=None``."""
    client = TestClient(create_app(settings, start_workers=False))
    _OPEN_APPS.append(client)
    if user is not None:
        token = make_user(client, user, admin=True, primary_namespace="default")
        client.headers["Authorization"] = f"Bearer {token}"
    return client


def make_user(
    client: TestClient,
    name: str,
    *,
    admin: bool = False,
    groups: tuple[str, ...] = (),
    primary_namespace: str | None = None,
    role_bindings: dict[str, list[str]] | None = None,
) -> str:
    """Create ``name`` (password ``password-NAME``) if needed and return a new API token."""
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        user = find_user(db, name) or add_user(
            db, name, f"password-{name}", admin=admin, groups=groups
        )
        who = principal_for_user(db, state.settings, user)
        request = TokenRequest("test", primary_namespace, None, role_bindings)
        secret, _row = create_token(db, state.settings, who, request)
    return secret


def submit(
    client: TestClient, text: str = "six==1.16.0\n", name: str = "env1", **extra: object
) -> int:
    response = client.post(
        "/api/v1/specification/", json={"specification": text, "environment_name": name, **extra}
    )
    assert response.status_code == 200, response.text
    return int(response.json()["data"]["build_id"])


def complete(
    client: TestClient,
    build_id: int,
    version: str = "1.16.0",
    extra: int = 0,
    *,
    image: bool = False,
    artifacts: tuple[str, ...] = (),
) -> None:
    """Drive a QUEUED build to COMPLETED through the worker services (no real install), with
    ``six`` and ``extra`` more packages (``dep0``, ``dep1``...); with ``image``, the prefix
    holds one file and the build gets a real OCI image of it at once; ``artifacts`` are its
    effective ``build_artifacts`` (a pack job is queued for CONDA_PACK/DOCKER_MANIFEST)."""
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        claimed = svc.claim(db, build_id, "test:0:0")
        assert claimed is not None
        prefix = state.layout.prefix(claimed.namespace, claimed.build_key)
        prefix.mkdir(parents=True)
        result = BuildResult(
            lockfile=LOCK.replace("1.16.0", version),
            pinned_yaml=f"dependencies:\n- pip:\n  - six=={version}\n",
            packages=[
                PackageInfo(
                    "six",
                    version,
                    "pip",
                    "https://pypi.org/simple",
                    f"https://files.example/six-{version}.whl",
                    "ab" * 32,
                    True,
                ),
                *(
                    PackageInfo(
                        f"dep{n}",
                        "1.0",
                        "pip",
                        "https://pypi.org/simple",
                        f"https://x/{n}.whl",
                        f"{n:064x}",
                        False,
                    )
                    for n in range(extra)
                ),
            ],
            size=1234,
            python_version="3.11.7",
        )
        published, switched = svc.publish(db, state.blobs, claimed, result, str(prefix), artifacts)
        assert published
    if image:  # packed at once and linked, as a pack job does after COMPLETED
        (prefix / "hello.txt").write_text(f"build {build_id}\n")
        files = produce_artifacts(
            prefix,
            state.settings.work_dir / str(build_id),
            ["DOCKER_MANIFEST"],
            variables={},
            log=lambda _line: None,
        )
        store_artifact_files(state.blobs, files)
        with session_scope(state.factory) as db:
            for f in files:
                if f.get("artifact_type"):
                    digest = str(f["sha256"])
                    db.add(
                        BuildArtifact(
                            build_id=build_id,
                            artifact_type=f["artifact_type"],
                            key=digest,
                            size=int(f["size"]),
                            sha256=digest,
                        )
                    )
    if switched:
        state.layout.publish(claimed.namespace, claimed.environment, claimed.build_key)


def fail(client: TestClient, build_id: int) -> None:
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        assert svc.claim(db, build_id, "test:0:0") is not None
        svc.finish_failed(db, build_id, BuildStatus.FAILED, "solve_failed: test")
