"""Build states, the transitions allowed between them, and build keys.

The database is the source of truth for a build's state::

    QUEUED ──► BUILDING ──► COMPLETED
      │  ▲         │ └────► FAILED
      │  └─────────┘ (requeued after a lost worker, attempt + 1)
      └──────────┴──────► CANCELED
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

from envstore.errors import Conflict

__all__ = [
    "FILE_ARTIFACTS",
    "TERMINAL",
    "ArtifactStatus",
    "BuildStatus",
    "build_key",
    "check_transition",
    "packed_artifacts",
]


class BuildStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    BUILDING = "BUILDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


TERMINAL = frozenset({BuildStatus.COMPLETED, BuildStatus.FAILED, BuildStatus.CANCELED})

_ALLOWED: dict[BuildStatus, frozenset[BuildStatus]] = {
    BuildStatus.QUEUED: frozenset({BuildStatus.BUILDING, BuildStatus.CANCELED, BuildStatus.FAILED}),
    BuildStatus.BUILDING: frozenset(
        {BuildStatus.COMPLETED, BuildStatus.FAILED, BuildStatus.CANCELED, BuildStatus.QUEUED}
    ),
    BuildStatus.COMPLETED: frozenset(),
    BuildStatus.FAILED: frozenset(),
    BuildStatus.CANCELED: frozenset(),
}


# Made after the build is COMPLETED, by a pack job (issue 11); the rest with the build.
FILE_ARTIFACTS = ("CONDA_PACK", "DOCKER_MANIFEST")


class ArtifactStatus(enum.StrEnum):
    """Where a COMPLETED build's packed artifacts are: QUEUED → PACKING → COMPLETED | FAILED
    (a lost worker puts PACKING back to QUEUED; ``rebuild-artifacts`` queues a FAILED one)."""

    QUEUED = "QUEUED"
    PACKING = "PACKING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


def packed_artifacts(effective: Iterable[str]) -> list[str]:
    """Which of a build's effective ``build_artifacts`` a pack job makes, in a fixed order.

    ``effective`` is the build's list after every policy level that applies
    (``services.packing.effective_build_artifacts``)."""
    chosen = set(effective)
    return [kind for kind in FILE_ARTIFACTS if kind in chosen]


def check_transition(current: BuildStatus, new: BuildStatus) -> None:
    """Raise :class:`Conflict` unless a build may go from ``current`` to ``new``."""
    if new not in _ALLOWED[current]:
        raise Conflict(f"build is {current.value}; it cannot become {new.value}")


def build_key(spec_sha256: str, scheduled_on: datetime, build_id: int, environment: str) -> str:
    """``<spec-hash[:8]>-<YYYYMMDD-HHMMSS-ffffff>-<build-id>-<environment-name>``."""
    stamp = scheduled_on.strftime("%Y%m%d-%H%M%S-%f")
    return f"{spec_sha256[:8]}-{stamp}-{build_id}-{environment}"
