"""Fixtures of the security tests: two users, each with an environment in their own namespace."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, make_user, submit


@dataclass
class World:
    """``bob`` owns ``bob/app`` (a completed build) and a token; ``alice`` owns ``alice/mine``."""

    app_client: TestClient
    alice: str
    bob: str
    bob_build: int
    bob_queued: int
    bob_token_id: int
    alice_build: int

    def as_(self, token: str | None) -> TestClient:
        client = self.app_client
        client.cookies.clear()
        client.headers.pop("Authorization", None)
        if token is not None:
            client.headers["Authorization"] = f"Bearer {token}"
        return client


def migrated_sqlite(tmp_path: Path) -> str:
    """A migrated SQLite database in the test's store, for tests whose subject does not depend
    on the database (a module overrides ``db_url`` with it to run once, not once per database)."""
    from envstore.db.engine import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'store' / 'state' / 'envstore.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    client = client_for(settings, user=None)
    alice = make_user(client, "alice")
    bob = make_user(client, "bob")
    client.headers["Authorization"] = f"Bearer {bob}"
    bob_build = submit(client, "six==1.16.0\n", name="app", namespace="bob")
    complete(client, bob_build)
    bob_queued = submit(client, "six==1.15.0\n", name="app", namespace="bob")
    tokens = client.get("/api/v1/token/").json()["data"]
    client.headers["Authorization"] = f"Bearer {alice}"
    alice_build = submit(client, "six==1.16.0\n", name="mine", namespace="alice")
    complete(client, alice_build)
    yield World(client, alice, bob, bob_build, bob_queued, tokens[0]["id"], alice_build)
    client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]
