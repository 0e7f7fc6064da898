"""Engine, sessions and schema migrations.

SQLite (the embedded default) runs in WAL mode with a busy timeout so that the API threads and
the build workers of one ``envstore serve`` can write concurrently; PostgreSQL needs nothing
special. The schema is owned by Alembic (``envstore db upgrade``); Alembic is imported by the
functions that use it, so that a process that only serves (an extra API process, a worker)
does not hold it (~10 MB, issue 11).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from envstore.errors import Unavailable

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "SessionFactory",
    "alembic_config",
    "current_revision",
    "discard",
    "finish_read",
    "head_revision",
    "make_engine",
    "session_scope",
    "upgrade",
]

SessionFactory = sessionmaker[Session]
_MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the pragmas and pool settings envstore relies on."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # Up to 30 connections, all kept once opened: "overflow" connections are closed when they
    # come back while the pool is full, and on PostgreSQL each new one forks a backend that
    # starts with cold caches; 10 kept + 20 overflow churned 12 of a load test's 38 CPU-seconds
    # there (benchmarks/README.md). The cap, per process, is what max_connections must allow.
    kwargs.setdefault("pool_size", 30)
    kwargs.setdefault("max_overflow", 0)
    kwargs.setdefault("pool_timeout", 5)
    connect_args = kwargs.pop("connect_args", {}) | {"connect_timeout": 5}
    return create_engine(url, connect_args=connect_args, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def session_scope(factory: SessionFactory) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, map outages to Unavailable."""
    session = factory()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        discard(session)  # its connection is most likely dead: rolling back may fail too
        raise Unavailable(f"database unavailable: {exc.orig}") from exc
    except BaseException:
        discard(session)
        raise
    session.close()


def discard(session: Session) -> None:
    """Roll back and close after an error; a connection lost meanwhile is invalidated (the
    pool replaces it) rather than raised over the error that matters."""
    _end(session, session.rollback)


def finish_read(session: Session) -> None:
    """End a session that only read: COMMIT, which for a transaction without writes is the
    same as a rollback, then close. psycopg forgets a connection's prepared statements on
    rollback, so PostgreSQL planned every query of every read anew: ~3 ms of its CPU per read
    under load (benchmarks/README.md). A connection lost meanwhile is dropped, not raised:
    what was read stands."""
    _end(session, session.commit)


def _end(session: Session, end: Callable[[], None]) -> None:
    try:
        end()
        session.close()
    except OperationalError:
        with contextlib.suppress(Exception):
            session.invalidate()


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (``envstore db upgrade``)."""
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    return script.get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
