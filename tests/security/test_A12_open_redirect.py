"""A12: after a login, ``next=`` is followed only to a path of this server; and the login page
is a plain HTML form that works without scripts (issue 15, "the browser's first contact")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from envstore.auth.redirects import safe_next
from envstore.settings import Settings
from tests.integration.helpers import client_for, make_user
from tests.security.conftest import migrated_sqlite

OFF_SITE = [
    "//evil.example/",
    "/\t/evil.example",
    "/\n/evil.example",
    "https://evil.example/",
    "http:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    " //evil.example",
    "evil.example",
    "javascript:alert(1)",
    "/\x00/evil.example",
    "/\u2028/evil.example",
    "/" + "a" * 3000,
]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    client = client_for(settings, user=None)
    make_user(client, "alice")
    yield client


@pytest.mark.parametrize("target", OFF_SITE)
def test_A12_off_site_targets_fall_back_to_the_home_page(target: str) -> None:
    assert safe_next(target, "/") == "/"


@pytest.mark.parametrize("target", ["/ui/envs", "/ui/envs?page=2#top", "/a/b/../c", "/"])
def test_A12_same_site_paths_are_kept(target: str) -> None:
    assert safe_next(target, "/home") == target


def test_A12_login_answers_only_same_site_redirects(client: TestClient) -> None:
    form = {"username": "alice", "password": "password-alice"}
    for query in ("next=/%09/evil.example", "next=//evil.example", "next=https%3A%2F%2Fevil"):
        json_answer = client.post(f"/login/?{query}", json=form)
        assert json_answer.json()["data"]["redirect_url"] == "/"
        page = client.post(f"/login/?{query}", data=form, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/"
        assert 'action="/login/?next=/"' in client.get(f"/login/?{query}").text
    kept = client.post("/login/?next=/ui/envs", data=form, follow_redirects=False)
    assert kept.headers["location"] == "/ui/envs"


def test_login_page_is_a_form_that_works_without_scripts(client: TestClient) -> None:
    page = client.get("/login/?next=/ui/envs")
    assert page.status_code == 200 and "<script" not in page.text
    assert 'method="post"' in page.text and 'name="username"' in page.text
    wrong = client.post(
        "/login/?next=/ui/envs", data={"username": "alice", "password": "nope-nope"}
    )
    assert wrong.status_code == 403 and wrong.headers["content-type"].startswith("text/html")
    assert "wrong user name or password" in wrong.text and 'name="password"' in wrong.text
    empty = client.post("/login/", data={"username": "alice"})
    assert empty.status_code == 400 and "enter a user name and a password" in empty.text
    done = client.post(
        "/login/?next=/ui/envs",
        data={"username": "alice", "password": "password-alice"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/envs"
    assert client.get("/api/v1/permission/").json()["data"]["authenticated"] is True
    out = client.post("/logout/", data={"go": "1"}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login/"
    assert client.get("/api/v1/permission/").json()["data"]["authenticated"] is False


def test_login_refuses_other_bodies_with_a_message(client: TestClient) -> None:
    answer = client.post(
        "/login/", content="username=alice", headers={"content-type": "text/plain"}
    )
    assert answer.status_code == 422 and "invalid request" in answer.json()["message"]
    long_name = {"username": "a" * 256, "password": "password-alice"}
    too_long = client.post("/login/", json=long_name)
    assert too_long.status_code == 422 and "username" in too_long.json()["message"]
    assert client.post("/login/", data=long_name).status_code == 400
