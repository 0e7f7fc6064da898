"""Every route of the v1 API: the happy path, not-found and wrong-state answers, envelopes,
paging clamps (I6), trailing-slash behaviour. Runs on SQLite and PostgreSQL (M3)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from envstore.settings import Settings
from tests.integration.helpers import LOCK, client_for, complete, fail, submit
from tests.security.routes import iter_routes

# Every route with a path parameter, called on objects that do not exist. A route added to the
# app without an entry here fails test_every_route_has_a_not_found_case.
NOT_FOUND = [
    ("GET", "/api/v1/environment/nope/nope/"),
    ("PUT", "/api/v1/environment/nope/nope/", {"build_id": 1}),
    ("DELETE", "/api/v1/environment/nope/nope/"),
    ("GET", "/api/v1/environment/nope/nope/lockfile/"),
    ("GET", "/api/v1/environment/nope/nope/conda-lock.yml"),
    ("GET", "/api/v1/environment/nope/nope/conda-lock.yaml"),
    ("GET", "/api/v1/resolve/nope/nope/"),
    ("GET", "/api/v1/build/999/"),
    ("PUT", "/api/v1/build/999/"),
    ("DELETE", "/api/v1/build/999/"),
    ("PUT", "/api/v1/build/999/cancel/"),
    ("PUT", "/api/v1/build/999/artifacts/"),
    ("GET", "/api/v1/build/999/packages/"),
    ("GET", "/api/v1/build/999/logs/"),
    ("GET", "/api/v1/build/999/lockfile/"),
    ("GET", "/api/v1/build/999/conda-lock.yaml"),
    ("GET", "/api/v1/build/999/conda-lock.yml"),
    ("GET", "/api/v1/build/999/yaml/"),
    ("GET", "/api/v1/namespace/nope/"),
    ("PUT", "/api/v1/namespace/nope/", {"metadata": {}}),
    ("DELETE", "/api/v1/namespace/nope/"),
    ("PUT", "/api/v1/namespace/nope/metadata", {"metadata": {}}),
    ("GET", "/api/v1/namespace/nope/roles"),
    ("DELETE", "/api/v1/namespace/nope/roles"),
    ("GET", "/api/v1/namespace/nope/role?other_namespace=x"),
    ("POST", "/api/v1/namespace/nope/role", {"other_namespace": "x", "role": "viewer"}),
    ("PUT", "/api/v1/namespace/nope/role", {"other_namespace": "x", "role": "viewer"}),
    ("DELETE", "/api/v1/namespace/nope/role", {"other_namespace": "x"}),
    ("DELETE", "/api/v1/token/999/"),
    ("GET", "/api/v1/build/999/archive/"),
    ("GET", "/api/v1/build/999/docker/"),
    ("GET", "/api/v1/build/999/explicit/"),
    ("GET", "/api/v1/build/999/diff/999/"),
    ("GET", "/api/v1/setting/nope/"),
    ("PUT", "/api/v1/setting/nope/", {"max_packages": 5}),
    ("GET", "/api/v1/setting/nope/nope/"),
    ("PUT", "/api/v1/setting/nope/nope/", {"max_packages": 5}),
]
# Routes with a path parameter that create what they name: they answer 400 to a bad name instead.
CREATES = {("POST", "/api/v1/namespace/{}/")}
LIST_ROUTES = [
    "/api/v1/environment/",
    "/api/v1/build/",
    "/api/v1/namespace/",
    "/api/v1/channel/",
    "/api/v1/package/",
    "/api/v1/build/1/packages/",
    "/api/v1/audit/",
]


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return client_for(settings)


def test_every_route_has_a_not_found_case(client: TestClient) -> None:
    covered = {
        (method, re.sub(r"/(nope|999)(?=/|$)", "/{}", path.split("?")[0]))
        for method, path, *_ in NOT_FOUND
    }
    covered |= CREATES
    # The OCI registry (/v2/) answers in its own error format; it has its own tests.
    checked = 0
    for method, path, _route in iter_routes(client.app):  # type: ignore[arg-type]
        if "{" not in path or not path.startswith("/api/v1/"):
            continue
        checked += 1
        generic = re.sub(r"\{[^}]+\}", "{}", path)
        assert (method, generic) in covered, f"no not-found test for {method} {path}"
    assert checked >= len(NOT_FOUND)


@pytest.mark.parametrize("case", NOT_FOUND, ids=lambda c: f"{c[0]} {c[1]}")
def test_not_found(client: TestClient, case: tuple) -> None:
    method, path, *body = case
    response = client.request(method, path, json=body[0] if body else None)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status"] == "error"
    assert "not found" in response.json()["message"] or "no " in response.json()["message"]


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_list_routes_clamp_size_to_100(client: TestClient, path: str) -> None:
    for n in range(3):
        submit(client, f"six=={n}.0\n", name=f"e{n}")
    complete(client, 1)
    response = client.get(path, params={"size": 1_000_000})
    assert response.status_code == 200
    body = response.json()
    assert body["size"] == 100 and len(body["data"]) <= 100
    assert body["count"] >= len(body["data"])


def test_list_pages_and_sorts(client: TestClient) -> None:
    for n in range(5):
        submit(client, f"six=={n}.0\n", name=f"e{n}")
    page = client.get(
        "/api/v1/environment/", params={"size": 2, "page": 2, "sort_by": "name", "order": "desc"}
    ).json()
    assert [e["name"] for e in page["data"]] == ["e2", "e1"]
    assert page["count"] == 5
    bad = client.get("/api/v1/environment/", params={"sort_by": "password"})
    assert bad.status_code == 400 and "cannot sort by 'password'" in bad.json()["message"]


def test_trailing_slash_redirects_and_query_slash_is_stripped(client: TestClient) -> None:
    submit(client)
    response = client.get("/api/v1/build", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"].endswith("/api/v1/build/")
    assert client.get("/api/v1/build/?status=QUEUED/").json()["count"] == 1


def test_submit_is_idempotent_for_the_same_spec(client: TestClient) -> None:
    first = submit(client, "six==1.16.0\n# a comment\n")
    assert submit(client, "  six==1.16.0  \n") == first  # still queued: same build
    complete(client, first)
    assert submit(client, "six==1.16.0\n") == first  # current build: same build
    assert submit(client, "six==1.15.0\n") != first


def test_rollback_switches_and_records(client: TestClient, settings: Settings) -> None:
    one = submit(client, "six==1.16.0\n")
    complete(client, one)
    two = submit(client, "six==1.15.0\n")
    complete(client, two, "1.15.0")
    env = client.get("/api/v1/environment/default/env1/").json()["data"]
    assert env["current_build_id"] == two
    response = client.put("/api/v1/environment/default/env1/", json={"build_id": one})
    assert response.status_code == 200
    assert response.json()["data"]["current_build_id"] == one
    link = settings.envs_dir / "default" / "env1"
    assert link.resolve().name == client.get(f"/api/v1/build/{one}/").json()["data"]["build_key"]
    assert "1.16.0" in client.get("/api/v1/environment/default/env1/lockfile/").text
    resolved = client.get(f"/api/v1/resolve/default/env1/?ref={two}").json()["data"]
    assert resolved["id"] == two
    # A date before the first build: a 404 that says when the first build became current.
    early = client.get("/api/v1/resolve/default/env1/?ref=2020-01-01")
    assert early.status_code == 404
    message = early.json()["message"]
    assert message.startswith(
        "default/env1 had no current build at 2020-01-01T23:59:59 (UTC); "
        "its first one became current at "
    )
    assert message.endswith(": use that date or a later one")


def test_rollback_to_unfinished_or_foreign_build_is_refused(client: TestClient) -> None:
    one = submit(client, "six==1.16.0\n")
    other = submit(client, "six==1.16.0\n", name="other")
    queued = client.put("/api/v1/environment/default/env1/", json={"build_id": one})
    assert queued.status_code == 409 and "only a COMPLETED build" in queued.json()["message"]
    foreign = client.put("/api/v1/environment/default/env1/", json={"build_id": other})
    assert foreign.status_code == 404
    empty = client.put("/api/v1/environment/default/env1/", json={})
    assert empty.status_code == 400


def test_cancel_and_delete_states(client: TestClient) -> None:
    queued = submit(client)
    response = client.put(f"/api/v1/build/{queued}/cancel/")
    assert response.status_code == 200
    assert client.get(f"/api/v1/build/{queued}/").json()["data"]["status"] == "CANCELED"
    again = client.put(f"/api/v1/build/{queued}/cancel/")
    assert again.status_code == 409 and "CANCELED" in again.json()["message"]
    done = submit(client, "six==1.15.0\n")
    complete(client, done)
    assert client.put(f"/api/v1/build/{done}/cancel/").status_code == 409
    current = client.delete(f"/api/v1/build/{done}/")
    assert current.status_code == 409 and "current build" in current.json()["message"]
    running = submit(client, "six==1.14.0\n")
    assert client.delete(f"/api/v1/build/{running}/").status_code == 409
    assert client.delete(f"/api/v1/build/{queued}/").status_code == 200
    assert client.get(f"/api/v1/build/{queued}/").status_code == 404


def test_artifacts_of_a_failed_build_are_not_found(client: TestClient) -> None:
    build = submit(client)
    fail(client, build)
    data = client.get(f"/api/v1/build/{build}/").json()["data"]
    assert data["status"] == "FAILED" and data["status_info"] == "solve_failed: test"
    assert isinstance(data["build_artifacts"], list)
    response = client.get(f"/api/v1/build/{build}/lockfile/")
    assert response.status_code == 404 and "no LOCKFILE artifact" in response.json()["message"]


def test_completed_build_serves_lockfile_yaml_packages(client: TestClient) -> None:
    build = submit(client)
    complete(client, build)
    data = client.get(f"/api/v1/build/{build}/").json()["data"]
    assert isinstance(data["size"], int) and data["size"] == 1234
    assert {a["artifact_type"] for a in data["build_artifacts"]} == {
        "LOCKFILE",
        "YAML",
        "LOGS",
        "DIRECTORY",
    }
    assert isinstance(data["specification"]["spec"], dict)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?", data["ended_on"])
    assert client.get(f"/api/v1/build/{build}/lockfile/").text == LOCK
    assert "six==1.16.0" in client.get(f"/api/v1/build/{build}/yaml/").text
    packages = client.get(f"/api/v1/build/{build}/packages/").json()["data"]
    assert packages[0]["name"] == "six" and packages[0]["requested"] is True
    assert packages[0]["channel"]["name"] == "https://pypi.org/simple"
    assert (
        client.get("/api/v1/package/", params={"search": "six", "exact": True}).json()["count"] == 1
    )
    assert client.get("/api/v1/environment/", params={"packages": "six"}).json()["count"] == 1
    assert client.get("/api/v1/environment/", params={"packages": "numpy"}).json()["count"] == 0
    assert client.get("/api/v1/build/", params={"packages": "SIX"}).json()["count"] == 1
    usage = client.get("/api/v1/usage/").json()["data"]
    assert usage == [
        {"namespace": "default", "num_environments": 1, "num_builds": 1, "storage": 1234}
    ]


def test_namespaces(client: TestClient) -> None:
    assert client.post("/api/v1/namespace/team/").status_code == 200
    assert client.post("/api/v1/namespace/team/").status_code == 409
    bad = client.post("/api/v1/namespace/-x/")
    assert bad.status_code == 400 and "must start with" in bad.json()["message"]
    updated = client.put("/api/v1/namespace/team/", json={"metadata": {"owner": "ds"}})
    assert updated.json()["data"]["metadata_"] == {"owner": "ds"}
    submit(client, namespace="team")
    busy = client.delete("/api/v1/namespace/team/")
    assert busy.status_code == 409
    names = [n["name"] for n in client.get("/api/v1/namespace/").json()["data"]]
    assert names == ["team"]


def test_environment_delete_refuses_while_building_then_removes(
    client: TestClient, settings: Settings
) -> None:
    build = submit(client)
    assert client.delete("/api/v1/environment/default/env1/").status_code == 409
    complete(client, build)
    assert (settings.envs_dir / "default" / "env1").is_symlink()
    assert client.delete("/api/v1/environment/default/env1/").status_code == 200
    assert client.get("/api/v1/environment/default/env1/").status_code == 404
    assert not (settings.envs_dir / "default" / "env1").exists()


def test_submitted_lockfile_is_accepted_and_bad_one_refused(client: TestClient) -> None:
    build = submit(client, LOCK, is_lockfile=True)
    spec = client.get(f"/api/v1/build/{build}/").json()["data"]["specification"]
    assert spec["kind"] == "pypi" and "lockfile" in spec["spec"]
    bad = client.post(
        "/api/v1/specification/",
        json={
            "specification": LOCK.replace("sha256: 8abb", "md5: 8abb"),
            "environment_name": "x",
            "is_lockfile": True,
        },
    )
    assert bad.status_code == 400 and "sha256" in bad.json()["message"]


def test_logs_stream_by_offset(client: TestClient) -> None:
    from envstore.db.engine import session_scope
    from envstore.services.worker import append_log

    build = submit(client)
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:
        append_log(db, build, "line one\n", 10_000)
        append_log(db, build, "line two\n", 10_000)
    response = client.get(f"/api/v1/build/{build}/logs/")
    assert response.text == "line one\nline two\n"
    offset = int(response.headers["X-Envstore-Log-Offset"])
    assert offset == len("line one\nline two\n")
    assert (
        client.get(f"/api/v1/build/{build}/logs/", params={"offset": 5}).text == "one\nline two\n"
    )
    assert client.get(f"/api/v1/build/{build}/logs/", params={"offset": offset}).text == ""


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert "/api/v1/specification/" in client.get("/openapi.json").json()["paths"]
    assert client.get("/api/v1/").json()["data"]["version"]
    perms = client.get("/api/v1/permission/").json()["data"]
    assert all(key.count("/") == 1 for key in perms["entity_permissions"])
