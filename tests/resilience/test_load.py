"""L2: 200 concurrent submits of the same spec to one environment give one build, and every
answer names it; never a 500. Against a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from envstore.db.engine import make_engine, upgrade
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _hammer(server: ServerProcess, n: int = 200) -> list[httpx.Response]:
    body = {"specification": "l2pkg==1.0\n", "environment_name": "l2"}

    def submit(_: int) -> httpx.Response:
        return httpx.post(f"{server.url}/api/v1/specification/", json=body, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        return list(pool.map(submit, range(n)))


def _check(server: ServerProcess, answers: list[httpx.Response]) -> None:
    assert {r.status_code for r in answers} == {200}, {r.status_code: r.text for r in answers}
    ids = {r.json()["data"]["build_id"] for r in answers}
    assert len(ids) == 1
    builds = server.api("GET", "/build/", params={"name": "l2"}).json()
    assert builds["count"] == 1


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_L2_200_concurrent_identical_submits_make_one_build(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = {"ENVSTORE_WORKERS": "0"}  # the answers, not the build, are under test
    if database == "postgres":
        url = request.getfixturevalue("pg_database")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        env["ENVSTORE_DATABASE_URL"] = url
    server = ServerProcess(tmp_path / "store", env=env).start()
    try:
        _check(server, _hammer(server))
    finally:
        server.stop()
