"""Checking and bringing the schema up to date at start-up."""

from __future__ import annotations

from sqlalchemy import Engine

from envstore.db.engine import current_revision, head_revision, upgrade
from envstore.errors import EnvstoreError

__all__ = ["SchemaOutOfDate", "ensure_schema"]


class SchemaOutOfDate(EnvstoreError):
    """The database schema is older than this version of envstore."""


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Migrate when ``auto_upgrade`` (the embedded SQLite default); otherwise refuse to run
    against a schema that is not at head, naming the command that fixes it."""
    current, head = current_revision(engine), head_revision(engine)
    if current == head:
        return
    if auto_upgrade:
        upgrade(engine)
        return
    raise SchemaOutOfDate(
        f"the database schema is at revision {current or 'none'}, this envstore needs {head}: "
        "run 'envstore db upgrade' with the same ENVSTORE_DATABASE_URL"
    )
