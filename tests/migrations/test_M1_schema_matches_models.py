"""M1: ``alembic upgrade head`` on an empty database gives exactly the schema of the models,
and the server refuses an out-of-date PostgreSQL schema, naming the command that fixes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from envstore.db.engine import current_revision, head_revision, make_engine, upgrade
from envstore.db.models import Base
from envstore.db.schema import SchemaOutOfDate, ensure_schema


def test_M1_upgrade_head_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_embedded_sqlite_migrates_itself(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new.db'}")
    ensure_schema(engine, auto_upgrade=True)
    assert current_revision(engine) == head_revision(engine)


def test_outdated_postgres_schema_refuses_to_start(pg_database: str, tmp_path: Path) -> None:
    engine = make_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine, "0001")
    if head_revision(engine) != "0001":
        with pytest.raises(SchemaOutOfDate, match="envstore db upgrade"):
            ensure_schema(engine, auto_upgrade=False)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    envstore = str(Path(sys.executable).parent / "envstore")
    env = {
        "ENVSTORE_DATABASE_URL": pg_database,
        "ENVSTORE_STORE_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [envstore, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "run 'envstore db upgrade'" in result.stderr
    assert "Traceback" not in result.stderr
    upgrade_run = subprocess.run(
        [envstore, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert upgrade_run.returncode == 0, upgrade_run.stderr
    engine = make_engine(pg_database)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()
