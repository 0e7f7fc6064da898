"""A9: a page of another site cannot make a signed-in browser change anything.

Cookie-authenticated POST/PUT/DELETE need a same-origin (or ENVSTORE_CORS_ORIGINS) Origin or
Referer and, on the API, a JSON body, or the session's X-CSRF-Token; token clients are
unaffected. TestClient sends ``Host: testserver``, so this server's origin is
``http://testserver``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from envstore.auth.csrf import is_json, request_origin, trusted_origin
from envstore.settings import Settings
from tests.integration.helpers import client_for, make_user
from tests.security.conftest import migrated_sqlite

EVIL = "http://evil.example"
HERE = "http://testserver"
SPEC = '{"specification": "six==1.16.0\\n", "environment_name": "forged"}'


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return migrated_sqlite(tmp_path)  # the guard runs before any query: one database is enough


@pytest.fixture
def browser(settings: Settings) -> Iterator[TestClient]:
    """alice, signed in with the login cookie only (no token header)."""
    settings.cors_origins = ["https://ui.example.org"]
    client = client_for(settings, user=None)
    make_user(client, "alice")
    answer = client.post("/login/", json={"username": "alice", "password": "password-alice"})
    assert answer.status_code == 200, answer.text
    yield client


def _builds(client: TestClient) -> int:
    return int(client.get("/api/v1/build/").json()["count"])


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"origin": EVIL, "content-type": "application/json"}, SPEC),
        ({"origin": EVIL, "content-type": "text/plain"}, SPEC),
        ({"origin": "null", "content-type": "text/plain"}, SPEC),
        ({"referer": f"{EVIL}/page", "content-type": "application/json"}, SPEC),
        ({"content-type": "text/plain"}, SPEC),
        ({"origin": HERE, "content-type": "text/plain"}, SPEC),
        ({"origin": HERE, "content-type": "application/x-www-form-urlencoded"}, "a=b"),
        ({"origin": HERE, "content-type": "multipart/form-data; boundary=x"}, "--x--"),
    ],
)
def test_A9_forged_submission_with_the_cookie_is_refused(
    browser: TestClient, headers: dict[str, str], body: str
) -> None:
    answer = browser.post("/api/v1/specification/", content=body, headers=headers)
    assert answer.status_code == 403
    message = answer.json()["message"]
    assert "cross-site request refused" in message or "JSON body" in message
    assert _builds(browser) == 0


def test_A9_token_minting_and_deleting_with_the_cookie_need_json_or_the_origin(
    browser: TestClient,
) -> None:
    assert browser.post("/api/v1/token/").status_code == 403  # the probe's empty body
    assert browser.post("/api/v1/token/", headers={"origin": EVIL}, json={}).status_code == 403
    made = browser.post("/api/v1/token/", headers={"origin": HERE}, json={"name": "ui"})
    assert made.status_code == 200, made.text
    token_id = made.json()["data"]["id"]
    assert browser.delete(f"/api/v1/token/{token_id}/", headers={"origin": EVIL}).status_code == 403
    gone = browser.delete(
        f"/api/v1/token/{token_id}/",
        headers={"origin": HERE, "content-type": "application/json"},
    )
    assert gone.status_code == 200


def test_A9_same_origin_json_configured_origin_and_non_browser_json_pass(
    browser: TestClient,
) -> None:
    for headers in (
        {"origin": HERE},
        {"referer": f"{HERE}/ui/envs"},
        {"origin": "https://ui.example.org"},
        {},  # a non-browser client holding a cookie (the CLI's login) names no origin
    ):
        answer = browser.post(
            "/api/v1/specification/",
            content=SPEC,
            headers={**headers, "content-type": "application/json"},
        )
        assert answer.status_code == 200, (headers, answer.text)


def test_A9_the_sessions_csrf_token_lets_other_bodies_through(browser: TestClient) -> None:
    token = browser.post(
        "/login/", json={"username": "alice", "password": "password-alice"}
    ).json()["data"]["csrf_token"]
    assert isinstance(token, str) and len(token) == 64
    wrong = browser.post("/api/v1/token/", headers={"x-csrf-token": "0" * 64})
    assert wrong.status_code == 403
    assert browser.post("/api/v1/token/", headers={"x-csrf-token": token}).status_code == 200
    # another session's token is no good for this one
    browser.post("/login/", json={"username": "alice", "password": "password-alice"})
    assert browser.post("/api/v1/token/", headers={"x-csrf-token": token}).status_code == 403


def test_A9_token_clients_are_unaffected(settings: Settings) -> None:
    client = client_for(settings, user=None)
    token = make_user(client, "bob")
    answer = client.post(
        "/api/v1/token/",
        headers={"authorization": f"Bearer {token}", "origin": EVIL, "content-type": "text/plain"},
    )
    assert answer.status_code == 200, answer.text


def test_A9_no_other_site_signs_a_visitor_in(settings: Settings) -> None:
    client = client_for(settings, user=None)
    make_user(client, "alice")
    form = {"username": "alice", "password": "password-alice"}
    forged = client.post("/login/", data=form, headers={"origin": EVIL}, follow_redirects=False)
    assert forged.status_code == 403 and "conda-store-auth" not in client.cookies
    signed = client.post("/login/", data=form, headers={"origin": HERE}, follow_redirects=False)
    assert signed.status_code == 303 and "conda-store-auth" in client.cookies
    # a signed-in browser cannot be logged out by another site either
    assert client.post("/logout/", headers={"origin": EVIL}).status_code == 403
    assert client.get("/api/v1/permission/").json()["data"]["authenticated"] is True


def test_A9_cors_preflight_from_a_foreign_origin_is_not_granted(browser: TestClient) -> None:
    preflight = browser.options(
        "/api/v1/specification/",
        headers={"origin": EVIL, "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        ({"host": "h:8080", "origin": "http://h:8080"}, True),
        ({"host": "H", "origin": "https://h:443"}, True),
        ({"host": "h", "referer": "http://h/ui/x?y"}, True),
        ({"host": "h", "origin": "http://h.evil"}, False),
        ({"host": "h", "origin": "http://user@h"}, False),
        ({"host": "h", "origin": "null"}, False),
        ({"host": "h", "referer": "/relative"}, False),
        ({"host": "h"}, None),
        ({"host": "h", "origin": "https://ui.example.org/"}, True),
    ],
)
def test_A9_origin_verdicts(headers: dict[str, str], verdict: bool | None) -> None:
    assert trusted_origin(headers, ["https://ui.example.org"]) is verdict


def test_A9_json_media_types() -> None:
    assert is_json("application/json; charset=utf-8") and is_json("application/vnd.x+json")
    for other in (None, "", "text/plain", "application/x-www-form-urlencoded", "text/json"):
        assert not is_json(other)
    assert request_origin({"origin": "HTTP://A.example:80"}) == "http://a.example"
