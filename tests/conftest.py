"""Shared fixtures: settings on a temporary store, databases (SQLite and PostgreSQL), clients.

Integration tests that take ``db_url`` run on both SQLite and PostgreSQL (RELIABILITY.md M3).
Without a reachable PostgreSQL those runs skip locally and *fail* under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from envstore.settings import Settings, load_settings

# The suite's conda channels are generated under the temporary directory (``envstore.testing``)
# or served on loopback: allow exactly those, besides https (I12). Servers the tests start
# inherit this; tests of the allow-list itself set their own.
os.environ.setdefault(
    "ENVSTORE_CHANNEL_ALLOW",
    json.dumps(
        ["https://", f"file://{Path(tempfile.gettempdir()).resolve()}/", "http://127.0.0.1"]
    ),
)

PG_ADMIN_URL = os.environ.get(
    "ENVSTORE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return str(exc).splitlines()[0]
    return None


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session."""
    problem = _pg_available()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"envstore_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite in the test's store, or the session's PostgreSQL."""
    from envstore.db.engine import make_engine, upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store' / 'state' / 'envstore.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    url = request.getfixturevalue("pg_database")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    engine.dispose()
    yield url


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def settings(store_dir: Path, db_url: str) -> Settings:
    return load_settings(store_dir=store_dir, database_url=db_url, workers=0)


@pytest.fixture(autouse=True)
def _close_test_apps() -> Iterator[None]:
    yield
    from tests.integration.helpers import close_apps

    close_apps()
