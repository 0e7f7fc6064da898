"""How the API uses its PostgreSQL connections under load (benchmarks/api_load.py found both):
every connection the pool opens is kept, and a read keeps its connection's prepared statements."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import sessionmaker

from envstore.db.engine import discard, finish_read, make_engine
from envstore.db.models import Build
from tests.support.cluster import fresh_schema

pytestmark = pytest.mark.postgres

_QUERY = select(Build.id).where(Build.id == bindparam("build_id"))


def _prepared_after_reads(url: str, end: str) -> int:
    engine = make_engine(url, pool_size=1)
    factory = sessionmaker(engine)
    try:
        for n in range(8):  # psycopg prepares a statement from its 5th run on a connection
            session = factory()
            session.connection().execute(_QUERY, {"build_id": n}).all()
            finish_read(session) if end == "finish_read" else discard(session)
        with engine.connect() as conn:
            return int(
                conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_read_keeps_its_connections_prepared_statements(pg_database: str) -> None:
    fresh_schema(pg_database)
    assert _prepared_after_reads(pg_database, "finish_read") == 1
    # why reads do not end in a rollback: psycopg forgets the prepared statements then
    assert _prepared_after_reads(pg_database, "discard") == 0


def test_the_pool_keeps_every_connection_it_opened(pg_database: str) -> None:
    engine = make_engine(pg_database)
    try:
        with ExitStack() as stack:
            held = [stack.enter_context(engine.connect()) for _ in range(30)]
            pids = {conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in held}
        assert len(pids) == 30
        assert engine.pool.checkedin() == 30  # none closed on the way back (no "overflow")
        with ExitStack() as stack:
            again = [stack.enter_context(engine.connect()) for _ in range(30)]
            reused = {conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in again}
        assert reused == pids  # the same backends: none forked anew
    finally:
        engine.dispose()
