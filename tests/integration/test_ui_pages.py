"""The web UI's pages in-process (SQLite and PostgreSQL): errors are pages, not JSON; every form
post needs the CSRF token of its own login session; links keep the URL prefix; out-of-range
input is a readable 4xx. The browser journey (tests/browser) covers the pages' behaviour."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, make_user, submit


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    client = client_for(settings, user=None)
    make_user(client, "alice")
    make_user(client, "mallory")
    yield client


def _login(client: TestClient, name: str) -> None:
    answer = client.post("/login/", json={"username": name, "password": f"password-{name}"})
    assert answer.status_code == 200, answer.text


def _csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/tokens/").text)
    assert found is not None
    return found.group(1)


def _alice_env(client: TestClient) -> tuple[int, int]:
    _login(client, "alice")
    first = submit(client, "six==1.16.0\n", "tools", namespace="alice")
    complete(client, first)
    second = submit(client, "six==1.17.0\n", "tools", namespace="alice")
    complete(client, second, "1.17.0")
    return first, second


def test_errors_are_pages_with_a_way_on(client: TestClient) -> None:
    answer = client.get("/ui/env/alice/tools/")
    assert answer.status_code == 403
    assert answer.headers["content-type"].startswith("text/html")
    assert "request not authorized" in answer.text and "/ui/login/?next=" in answer.text
    _login(client, "alice")
    missing = client.get("/ui/env/alice/nothing/")
    assert missing.status_code == 404 and "environment alice/nothing not found" in missing.text
    for path in ("/ui/?page=0", "/ui/env/alice/tools/?from=0&to=1", "/ui/nowhere/"):
        answer = client.get(path)
        assert 400 <= answer.status_code < 500, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert '<p class="lead">' in answer.text, path
    huge = client.get(f"/ui/build/{2**70}/")
    assert huge.status_code in (400, 403, 404, 422), huge.text
    assert client.get("/ui/?q=" + "x" * 201).status_code == 422


def test_form_posts_need_the_sessions_csrf_token(client: TestClient) -> None:
    first, _second = _alice_env(client)
    url = f"/ui/env/alice/tools/rollback/{first}/"
    good = _csrf(client)
    for form in ({"other": "1"}, {"csrf": ""}, {"csrf": "0" * 64}):
        refused = client.post(url, data=form, follow_redirects=False)
        assert refused.status_code == 403 and "did not come from this site" in refused.text
    # a JSON body (what a page of another site cannot send without a preflight) is no form
    assert client.post(url, json={"csrf": good}, follow_redirects=False).status_code == 400
    # mallory's token is bound to mallory's session: it does not work in alice's
    other = client_for(client.app.state.envstore.settings, user=None)  # type: ignore[attr-defined]
    _login(other, "mallory")
    stolen = _csrf(other)
    assert stolen != good
    assert client.post(url, data={"csrf": stolen}, follow_redirects=False).status_code == 403
    done = client.post(url, data={"csrf": good}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/ui/env/alice/tools/?notice=")
    env = client.get("/api/v1/environment/alice/tools/").json()["data"]
    assert env["current_build_id"] == first
    # signed out, the same post is anonymous: refused for want of rights, not of a token
    client.cookies.clear()
    anonymous = client.post(url, data={"other": "1"}, follow_redirects=False)
    assert anonymous.status_code == 403 and "request not authorized" in anonymous.text


def test_rollback_only_to_a_completed_build_of_this_environment(client: TestClient) -> None:
    first, second = _alice_env(client)
    other = submit(client, "six==1.16.0\n", "other", namespace="alice")
    csrf = _csrf(client)
    wrong = client.get(f"/ui/env/alice/tools/rollback/{other}/")
    assert wrong.status_code == 404 and f"build {other} is not a build of alice/tools" in wrong.text
    queued = client.post(f"/ui/env/alice/other/rollback/{other}/", data={"csrf": csrf})
    assert queued.status_code == 409 and "only a COMPLETED build" in queued.text
    assert client.get(f"/ui/env/alice/tools/?compare=1&from={first}&to={other}").status_code == 200
    page = client.get(f"/ui/env/alice/tools/?compare=1&from={first}&to={second}").text
    assert "1 change" in page and "1.17.0" in page


def test_viewer_gets_no_controls_and_forged_posts_are_refused(client: TestClient) -> None:
    first, _second = _alice_env(client)
    mapping = {"role_mappings": [{"entity": "mallory", "role": "viewer"}]}
    admin = client_for(client.app.state.envstore.settings)  # type: ignore[attr-defined]
    assert admin.put("/api/v1/namespace/alice/", json=mapping).status_code == 200
    _login(client, "mallory")
    page = client.get("/ui/env/alice/tools/").text
    assert "tools" in page and "Edit specification" not in page and "Make current" not in page
    csrf = _csrf(client)
    for path in (f"/ui/env/alice/tools/rollback/{first}/", "/ui/namespaces/alice/delete/"):
        refused = client.post(path, data={"csrf": csrf, "confirm": "alice"})
        assert refused.status_code == 403 and "request not authorized" in refused.text, path
    assert client.get("/ui/env/alice/tools/edit/").status_code == 403


def test_every_link_keeps_the_url_prefix(settings: Settings) -> None:
    prefixed = settings.model_copy(update={"url_prefix": "/envs"})
    client = client_for(prefixed, user=None)
    make_user(client, "alice")
    assert client.get("/envs/", follow_redirects=False).headers["location"] == "/envs/ui/"
    answer = client.post("/envs/login/", json={"username": "alice", "password": "password-alice"})
    assert answer.status_code == 200
    for path in ("/envs/ui/", "/envs/ui/new/", "/envs/ui/tokens/", "/envs/ui/login/"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for url in re.findall(r'(?:href|src|action)="(/[^"]*)"', page.text):
            assert url.startswith("/envs/"), (path, url)
    assert client.get("/envs/ui/static/style.css").status_code == 200
    assert client.get("/ui/").status_code == 404


def test_sign_in_offers_the_external_provider_when_configured(settings: Settings) -> None:
    plain = client_for(settings, user=None).get("/ui/login/").text
    assert 'id="login-form"' in plain and "oauth_login" not in plain
    hub = settings.model_copy(
        update={
            "oauth_provider": "jupyterhub",
            "jupyterhub_url": "https://hub.example.org/",
            "local_login": False,
        }
    )
    page = client_for(hub, user=None).get("/ui/login/?next=/ui/env/a/b/").text
    assert 'href="/oauth_login/?next=/ui/env/a/b"' in page and "Sign in with" in page
    assert 'id="login-form"' not in page  # local accounts are off: no form to fill in
    elsewhere = client_for(hub, user=None).get("/ui/login/?next=//evil.example/").text
    assert "evil.example" not in elsewhere


def test_a_busy_database_is_a_page_that_says_so(client: TestClient) -> None:
    """The error page keeps the API's Retry-After when the database is away."""
    state = client.app.state.envstore  # type: ignore[attr-defined]
    state.engine.dispose()
    broken = state.settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    )
    down = client_for(broken, user=None)
    answer = down.get("/ui/")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert "database unavailable" in answer.text and answer.headers["content-type"].startswith(
        "text/html"
    )
