"""How far a build has got: the one read behind the long polls of the build routes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from envstore.core.builds import BuildStatus
from envstore.db.models import Build
from envstore.errors import NotFound

__all__ = ["build_progress"]


def build_progress(db: Session, build_id: int) -> tuple[BuildStatus, int]:
    """``(status, log size in bytes)`` of a build that is not deleted."""
    row = db.execute(
        select(Build.status, Build.log_size).where(Build.id == build_id, Build.deleted_on.is_(None))
    ).first()
    if row is None:
        raise NotFound(f"build {build_id} not found")
    return BuildStatus(row[0]), int(row[1] or 0)
