"""The web UI's policy and audit pages in-process (SQLite and PostgreSQL): they show what the
API's ``/setting/``, ``/policy/check/`` and ``/audit/`` answer the same caller, refuse what
those refuse (as pages), and turn bad input into a readable 4xx."""

from __future__ import annotations

import html
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
    assert _admin(client).post("/api/v1/namespace/alice/").status_code == 200
    yield client


def _admin(client: TestClient) -> TestClient:
    return client_for(client.app.state.envstore.settings)  # type: ignore[attr-defined]


def _login(client: TestClient, name: str) -> None:
    answer = client.post("/login/", json={"username": name, "password": f"password-{name}"})
    assert answer.status_code == 200, answer.text


def _rows(page: str) -> list[str]:
    """The text of each table row, tags dropped, whitespace squeezed."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.DOTALL)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()) for row in rows]


def test_policy_page_shows_merged_settings_history_and_violations(client: TestClient) -> None:
    admin = _admin(client)
    extra = {"pypi_included_packages": ["wheel"], "max_packages": 500}
    assert admin.put("/api/v1/setting/", json={"max_packages": 900}).status_code == 200
    assert admin.put("/api/v1/setting/alice/", json=extra).status_code == 200
    _login(client, "alice")
    build = submit(client, "six==1.17.0\n", "tools", namespace="alice")
    complete(client, build, "1.17.0")
    deny = {"denied_packages": [{"name": "six", "version": ">=1.17", "reason": "CVE-test"}]}
    assert admin.put("/api/v1/setting/alice/", json=deny).status_code == 200

    page = client.get("/ui/policy/?namespace=alice")
    assert page.status_code == 200, page.text
    rows = _rows(page.text)
    # the merged value and the level it comes from: alice's 500 beats the global 900
    assert any(r.startswith("max_packages") and "500 namespace alice set here" in r for r in rows)
    assert any(r.startswith("pypi_included_packages") and '["wheel"]' in r for r in rows)
    # the history, newest first: who, key, old -> new
    changes = [r for r in rows if "admin" in r and "→" in r]
    assert "denied_packages" in changes[0] and "unset →" in changes[0]
    assert any("max_packages unset → 500" in r for r in changes)
    # the current build breaks the new deny rule
    assert "alice/tools" in page.text and "CVE-test" in page.text
    assert f"build #{build}" in page.text

    # the environment level merges all three; the environment page shows what policy added
    env_level = client.get("/ui/policy/?namespace=alice&environment=tools")
    assert env_level.status_code == 200 and "environment alice/tools" in env_level.text
    env_page = client.get("/ui/env/alice/tools/").text
    assert "Added by policy" in env_page and "pypi_included_packages" in env_page
    assert "<code>wheel</code>" in env_page

    # global: readable by anyone who may read settings somewhere; alice cannot change it
    glob = client.get("/ui/policy/")
    assert glob.status_code == 200 and "envstore settings set" not in glob.text
    # the nav links both pages now (no longer greyed out)
    assert 'href="/ui/policy/"' in glob.text


def test_policy_page_refuses_and_rejects_like_the_api(client: TestClient) -> None:
    _login(client, "alice")
    # another namespace is refused the same whether it exists or not (A1)
    for ns in ("mallory", "nobody-here"):
        refused = client.get(f"/ui/policy/?namespace={ns}")
        assert refused.status_code == 403 and "request not authorized" in refused.text, ns
    assert client.get("/ui/policy/?namespace=alice&environment=nothing").status_code == 404
    admin = _admin(client)
    missing = admin.get("/ui/policy/?namespace=nobody-here")
    assert (
        missing.status_code == 404 and "namespace &#39;nobody-here&#39; not found" in missing.text
    )
    lone = client.get("/ui/policy/?environment=tools")
    assert lone.status_code == 400 and "give both" in lone.text
    bad_name = admin.get("/ui/policy/?namespace=a%20b")
    assert bad_name.status_code == 400 and bad_name.headers["content-type"].startswith("text/html")
    for query in ("page=0", "page=100001", "namespace=" + "x" * 256):
        answer = client.get(f"/ui/policy/?{query}")
        assert answer.status_code == 422 and '<p class="lead">' in answer.text, query
    past = client.get("/ui/policy/?namespace=alice&page=7")
    assert past.status_code == 200 and "No change at this level yet" in past.text
    # signed out: the readable 403 page with a way to sign in
    client.cookies.clear()
    anonymous = client.get("/ui/policy/")
    assert anonymous.status_code == 403 and "/ui/login/?next=" in anonymous.text


def _csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ui/tokens/").text)
    assert found is not None
    return found.group(1)


def test_policy_form_changes_a_level_for_its_admins_only(client: TestClient) -> None:
    _login(client, "alice")
    csrf = _csrf(client)
    page = client.get("/ui/policy/?namespace=alice").text
    assert (
        'method="post" action="/ui/policy/"' in page
        and "default_namespace" not in page.split("c-key")[1]
    )
    form = {"csrf": csrf, "namespace": "alice", "key": "conda_allowed_channels"}
    done = client.post("/ui/policy/", data={**form, "value": '["conda-forge"]'})
    assert (
        done.status_code == 200 and "conda_allowed_channels set at the namespace alice" in done.text
    )
    api = client.get("/api/v1/setting/alice/").json()
    assert api["set_here"] == {"conda_allowed_channels": ["conda-forge"]}
    # text that is not JSON is text; a wrong type is refused on the page, what was typed kept
    bad = client.post("/ui/policy/", data={**form, "key": "max_packages", "value": "many"})
    assert bad.status_code == 400 and 'role="alert"' in bad.text and "max_packages" in bad.text
    assert ">many</textarea>" in bad.text
    unknown = client.post("/ui/policy/", data={**form, "key": "no_such_key", "value": "1"})
    assert unknown.status_code == 400 and "choose a setting" in unknown.text
    # empty unsets the key at this level
    gone = client.post("/ui/policy/", data={**form, "value": ""})
    assert gone.status_code == 200 and "conda_allowed_channels unset" in gone.text
    assert client.get("/api/v1/setting/alice/").json()["set_here"] == {}
    # without the session's token, at a level she does not administer, or a missing one
    assert client.post("/ui/policy/", data={**form, "csrf": "0" * 64}).status_code == 403
    for ns in ("", "mallory", "nobody-here"):
        refused = client.post("/ui/policy/", data={**form, "namespace": ns, "value": "[]"})
        assert refused.status_code == 403 and "request not authorized" in refused.text, ns
    missing = client.post("/ui/policy/", data={**form, "environment": "nothing", "value": "[]"})
    assert missing.status_code == 404
    long = client.post("/ui/policy/", data={**form, "namespace": "x" * 256, "value": "[]"})
    assert long.status_code == 400 and "at most 255" in long.text
    # a viewer of alice's namespace sees the settings but no form, and cannot post one
    viewer = make_user(client, "alice", role_bindings={"alice/*": ["viewer"]})
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    client.cookies.clear()
    seen = client.get("/ui/policy/?namespace=alice", headers=as_viewer)
    assert seen.status_code == 200 and 'method="post" action="/ui/policy/"' not in seen.text
    posted = client.post("/ui/policy/", data={**form, "value": "[]"}, headers=as_viewer)
    assert posted.status_code == 403


def test_audit_page_for_admins_newest_first_filtered_and_paged(client: TestClient) -> None:
    admin = _admin(client)
    for n in range(52):
        assert (
            admin.put("/api/v1/setting/alice/", json={"max_packages": 100 + n}).status_code == 200
        )
    _login(client, "alice")
    submit(client, "six==1.17.0\n", "tools", namespace="alice")

    page = client.get("/ui/audit/")
    assert page.status_code == 200, page.text
    rows = _rows(page.text)[1:]
    assert len(rows) == 50 and "environment.submit" in rows[0] and "alice/tools" in rows[0]
    assert "Page 1 of 2" in page.text and "page=2" in page.text
    # alice administers her namespace only: no user.create (server-wide) events, nobody else's
    assert "user.create" not in page.text
    second = _rows(client.get("/ui/audit/?page=2").text)[1:]
    # oldest last: the namespace's creation, then the first three setting changes
    assert len(second) == 4 and "namespace.create" in second[-1]
    assert all("setting.update" in r for r in second[:3]) and "→ 100" in second[2].replace(
        '{"max_packages": 100}', "100"
    )
    assert "max_packages" in client.get("/ui/audit/?page=2").text

    kind = client.get("/ui/audit/?kind=environment.&actor=alice&namespace=alice&environment=tools")
    assert len(_rows(kind.text)[1:]) == 1 and "1 event matching" in kind.text
    assert "No events match" in client.get("/ui/audit/?actor=nobody").text
    assert "No events match" in client.get("/ui/audit/?since=2999-01-01").text
    assert "No events match" in client.get("/ui/audit/?until=2000-01-01T00:00").text
    everyone = admin.get("/ui/audit/?kind=user.create")
    assert everyone.status_code == 200 and "user alice" in everyone.text

    for query, message in (
        ("since=yesterday", "since must be an ISO date"),
        ("until=2026-13-01", "until must be an ISO date"),
        ("since=2026-12-02&until=2026-12-01", "since must be before until"),
    ):
        answer = client.get(f"/ui/audit/?{query}")
        assert answer.status_code == 400 and message in answer.text, query
    for query in ("page=0", "page=100001", "kind=" + "k" * 101, "since=" + "2" * 41):
        assert client.get(f"/ui/audit/?{query}").status_code == 422, query
    assert "Past the last page" in client.get("/ui/audit/?page=3").text


def test_audit_page_is_refused_to_non_admins(client: TestClient) -> None:
    viewer = make_user(client, "alice", role_bindings={"alice/*": ["viewer"]})
    answer = client.get("/ui/audit/", headers={"Authorization": f"Bearer {viewer}"})
    assert answer.status_code == 403 and "request not authorized" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    # the nav does not offer it to them either
    home = client.get("/ui/", headers={"Authorization": f"Bearer {viewer}"}).text
    assert "/ui/audit/" not in home and '<a href="/ui/policy/">Policy</a>' in home
    anonymous = client.get("/ui/audit/")
    assert anonymous.status_code == 403 and "/ui/login/?next=" in anonymous.text
