"""The read paths of the API: a fixed number of SQL statements per request whatever the page
size (no N+1), and read models that hold what the tables hold. SQLite and PostgreSQL (M3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from envstore.db.engine import session_scope
from envstore.db.models import Build, BuildArtifact, Environment
from envstore.services.builds import load_build
from envstore.services.environments import load_environment
from envstore.settings import Settings
from tests.integration.helpers import client_for, complete, submit

# Statements each read makes beyond resolving the caller (the token, its user's groups and
# namespace role mappings: what GET /api/v1/ makes). A change here is a deliberate act.
READS = {
    "/api/v1/environment/": 3,  # count, page of ids, the page
    "/api/v1/build/": 4,  # count, page of ids, the page, its artifacts
    "/api/v1/package/": 3,
    "/api/v1/channel/": 2,
    "/api/v1/namespace/": 2,
    "/api/v1/environment/default/e0/": 1,
    "/api/v1/build/1/": 3,  # the permission check, the build, its artifacts
    "/api/v1/build/1/packages/": 5,
}
# The lists this data gives more than one row (one channel, one namespace here).
PAGED = ["/api/v1/environment/", "/api/v1/build/", "/api/v1/package/", "/api/v1/build/1/packages/"]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    client = client_for(settings)
    for n in range(3):
        build_id = submit(client, f"six=={n}.0\n", name=f"e{n}")
        complete(client, build_id, f"{n}.0", extra=4)
    yield client
    client.app.state.envstore.engine.dispose()  # type: ignore[attr-defined]


@contextmanager
def _counting(client: TestClient) -> Iterator[list[str]]:
    engine = client.app.state.envstore.engine  # type: ignore[attr-defined]
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _statements(client: TestClient, path: str, **params: Any) -> list[str]:
    with _counting(client) as sent:
        response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return sent


def test_each_read_makes_its_fixed_number_of_statements(client: TestClient) -> None:
    client.get("/api/v1/")  # the token's last use is written at most once a minute
    identity = len(_statements(client, "/api/v1/"))
    made = {path: len(_statements(client, path)) - identity for path in READS}
    assert made == READS


@pytest.mark.parametrize("path", PAGED)
def test_a_page_of_many_costs_the_statements_of_a_page_of_one(
    client: TestClient, path: str
) -> None:
    client.get("/api/v1/")
    assert len(client.get(path).json()["data"]) >= 3
    assert len(_statements(client, path, size=1)) == len(_statements(client, path))


def test_read_models_hold_what_the_tables_hold(client: TestClient) -> None:
    factory = client.app.state.envstore.factory  # type: ignore[attr-defined]
    with session_scope(factory) as db:
        build = db.scalars(select(Build).where(Build.id == 2)).one()
        view = load_build(db, 2)
        for field in (
            "id",
            "environment_id",
            "status",
            "status_info",
            "size",
            "scheduled_on",
            "started_on",
            "ended_on",
            "build_key",
            "attempt",
            "as_of",
            "python_version",
        ):
            assert getattr(view, field) == getattr(build, field), field
        env = db.get(Environment, build.environment_id)
        assert env is not None
        assert (view.namespace, view.environment) == ("default", env.name)
        assert view.specification.id == build.specification_id
        artifacts = db.scalars(
            select(BuildArtifact).where(BuildArtifact.build_id == 2).order_by(BuildArtifact.id)
        )
        assert view.artifacts == [(a.id, a.artifact_type, a.key) for a in artifacts]
        assert len(view.artifacts) >= 3
        env_view = load_environment(db, "default", env.name)
        assert (env_view.id, env_view.current_build_id, env_view.description) == (
            env.id,
            env.current_build_id,
            env.description,
        )
        assert env_view.current_build is not None and env_view.current_build.id == 2
