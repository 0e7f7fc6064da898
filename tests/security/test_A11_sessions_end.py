"""A11: a login cookie stops working after logout, a password change (``envstore user
passwd``) and while its user is disabled (``envstore user disable``), at the very next request.

Each browser sign-in is a row in ``login_session`` that holds only the sha256 of the cookie's
session secret. SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from envstore.db.engine import session_scope
from envstore.db.models import LoginSession, utcnow
from envstore.errors import NotFound
from envstore.services.users import set_disabled, set_password
from envstore.settings import Settings
from tests.integration.helpers import client_for, make_user
from tests.support.server import ENVSTORE

COOKIE = "conda-store-auth"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    client = client_for(settings, user=None)
    make_user(client, "alice")
    yield client


def _sign_in(client: TestClient, password: str = "password-alice") -> str:
    client.cookies.clear()
    answer = client.post("/login/", json={"username": "alice", "password": password})
    assert answer.status_code == 200, answer.text
    return str(client.cookies[COOKIE])


def _signed_in(client: TestClient, cookie: str) -> bool:
    client.cookies.clear()
    client.cookies.set(COOKIE, cookie)
    me = client.get("/api/v1/permission/").json()["data"]
    client.cookies.clear()
    return bool(me["authenticated"])


def test_A11_logout_ends_that_session_only(client: TestClient) -> None:
    laptop, phone = _sign_in(client), _sign_in(client)
    assert _signed_in(client, laptop) and _signed_in(client, phone)
    client.cookies.set(COOKIE, laptop)
    assert client.post("/logout/").status_code == 200
    assert not _signed_in(client, laptop)  # the saved cookie, replayed
    assert _signed_in(client, phone)


def test_A11_password_change_ends_every_session(client: TestClient) -> None:
    state = client.app.state.envstore  # type: ignore[attr-defined]
    cookies = [_sign_in(client), _sign_in(client)]
    with session_scope(state.factory) as db:
        set_password(db, "alice", "a-new-password")
    assert not any(_signed_in(client, c) for c in cookies)
    assert _signed_in(client, _sign_in(client, "a-new-password"))


def test_A11_disabled_user_loses_sessions_and_tokens(
    client: TestClient, settings: Settings
) -> None:
    token = make_user(client, "alice")
    cookie = _sign_in(client)
    env = {
        **os.environ,
        "ENVSTORE_STORE_DIR": str(settings.store_dir),
        "ENVSTORE_DATABASE_URL": settings.resolved_database_url,
    }
    done = subprocess.run(
        [ENVSTORE, "user", "disable", "alice"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "disabled" in done.stdout
    assert not _signed_in(client, cookie)
    bearer = {"authorization": f"Bearer {token}"}
    assert (
        client.get("/api/v1/permission/", headers=bearer).json()["data"]["authenticated"] is False
    )
    refused = client.post("/login/", json={"username": "alice", "password": "password-alice"})
    assert refused.status_code == 403
    state = client.app.state.envstore  # type: ignore[attr-defined]
    with session_scope(state.factory) as db:  # what `envstore user enable alice` runs
        set_disabled(db, "alice", False)
        with pytest.raises(NotFound, match="nobody"):
            set_disabled(db, "nobody", True)
    assert client.get("/api/v1/permission/", headers=bearer).json()["data"]["authenticated"]
    assert not _signed_in(client, cookie)  # an ended session stays ended


def test_A11_expired_and_pre_session_cookies_sign_nobody_in(client: TestClient) -> None:
    state = client.app.state.envstore  # type: ignore[attr-defined]
    cookie = _sign_in(client)
    with session_scope(state.factory) as db:
        db.execute(update(LoginSession).values(expires_on=utcnow() - timedelta(seconds=1)))
    assert not _signed_in(client, cookie)
    # a validly signed cookie of the old format (a user name, no session) is not enough
    old = state.cookies._session.dumps({"u": "alice"})
    assert not _signed_in(client, old)


def test_A11_the_database_holds_only_session_hashes(client: TestClient) -> None:
    state = client.app.state.envstore  # type: ignore[attr-defined]
    cookie = _sign_in(client)
    secret = state.cookies.read_login(cookie).session
    with state.engine.connect() as connection:
        rows = connection.execute(text("SELECT session_hash FROM login_session")).all()
    assert rows and all(len(r[0]) == 64 for r in rows)
    assert secret not in repr(rows)
