"""ETags and ``304 Not Modified`` on the read routes: a tag is only ever answered with 304
while the body it stands for is still what this caller would be sent. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, make_user, submit

READS = [
    "/api/v1/namespace/",
    "/api/v1/environment/",
    "/api/v1/environment/default/env1/",
    "/api/v1/build/{build}/",
    "/api/v1/build/{build}/packages/",
    "/api/v1/build/",
    "/api/v1/permission/",
]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    client = client_for(settings)
    complete(client, submit(client), extra=2)
    yield client
    client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]


def _build_of(client: TestClient) -> int:
    found = client.get("/api/v1/environment/default/env1/").json()["data"]
    return int(found["current_build_id"])


@pytest.mark.parametrize("route", READS)
def test_a_read_answers_its_own_etag_with_304_and_no_body(client: TestClient, route: str) -> None:
    path = route.format(build=_build_of(client))
    first = client.get(path)
    tag = first.headers["etag"]
    assert first.status_code == 200 and tag.startswith('"')
    assert first.headers["cache-control"] == "private, no-cache"
    again = client.get(path, headers={"If-None-Match": tag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == tag
    # one of several tags, weak or not, still matches; a tag of something else does not
    listed = client.get(path, headers={"If-None-Match": f'"other", W/{tag}'})
    assert listed.status_code == 304
    assert client.get(path, headers={"If-None-Match": "*"}).status_code == 304
    other = client.get(path, headers={"If-None-Match": '"0123"'})
    assert other.status_code == 200 and other.json() == first.json()


def test_changing_an_environment_gives_its_reads_a_new_etag(client: TestClient) -> None:
    paths = ["/api/v1/environment/default/env1/", "/api/v1/environment/"]
    before = {path: client.get(path).headers["etag"] for path in paths}
    changed = client.put("/api/v1/environment/default/env1/", json={"description": "new"})
    assert changed.status_code == 200, changed.text
    for path, tag in before.items():
        after = client.get(path, headers={"If-None-Match": tag})
        assert after.status_code == 200, path
        assert after.headers["etag"] != tag
        assert "new" in after.text


def test_a_build_that_completes_is_not_answered_304_with_its_queued_etag(
    client: TestClient,
) -> None:
    build = submit(client, "six==1.15.0\n", name="env2")
    path = f"/api/v1/build/{build}/"
    queued = client.get(path)
    assert queued.json()["data"]["status"] == "QUEUED"
    complete(client, build, "1.15.0")
    after = client.get(path, headers={"If-None-Match": queued.headers["etag"]})
    assert after.status_code == 200
    assert after.json()["data"]["status"] == "COMPLETED"
    packages = client.get(f"{path}packages/", headers={"If-None-Match": queued.headers["etag"]})
    assert packages.status_code == 200


def test_one_callers_etag_is_never_valid_for_anothers_view(settings: Settings) -> None:
    client = client_for(settings, user=None)
    alice = make_user(client, "alice")
    bob = make_user(client, "bob")
    client.headers["Authorization"] = f"Bearer {bob}"
    complete(client, submit(client, name="app", namespace="bob"))
    # The same body for both (an empty page): the tags still differ, they carry who asked.
    empty = "/api/v1/environment/?namespace=nobody"
    bobs = client.get(empty)
    client.headers["Authorization"] = f"Bearer {alice}"
    alices = client.get(empty, headers={"If-None-Match": bobs.headers["etag"]})
    assert alices.status_code == 200
    assert alices.json()["data"] == bobs.json()["data"] == []
    assert alices.headers["etag"] != bobs.headers["etag"]
    # Bob's list shows his environment; Alice sending his tag gets her own view, without it.
    client.headers["Authorization"] = f"Bearer {bob}"
    bob_list = client.get("/api/v1/environment/")
    assert [e["name"] for e in bob_list.json()["data"]] == ["app"]
    client.headers["Authorization"] = f"Bearer {alice}"
    alice_list = client.get(
        "/api/v1/environment/", headers={"If-None-Match": bob_list.headers["etag"]}
    )
    assert alice_list.status_code == 200
    assert alice_list.json()["data"] == []


def test_a_refused_read_carries_no_etag(settings: Settings) -> None:
    client = client_for(settings, user=None)
    client.headers["Authorization"] = f"Bearer {make_user(client, 'alice')}"
    refused = client.get("/api/v1/environment/other/none/", headers={"If-None-Match": "*"})
    assert refused.status_code == 403
    assert "etag" not in refused.headers
