"""Build duration histograms, observed where builds run (the worker that ran the build).

Stage figures come from the stage frames the build process writes into the log
(``== solve done in 1.23s``), so nothing but the log crosses the process boundary.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy.orm import Session

from envstore.services.dispatch import stage_seconds

__all__ = ["BuildMetrics"]

# a tiny build takes well under a second, a large conda environment tens of minutes
_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 3600)
# runner stage name -> metric label ("artifacts" packs the archive and the image: packing)
_STAGES = {"solve": "solve", "install": "install", "lock": "lock", "artifacts": "packing"}


class BuildMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.build = Histogram(
            "envstore_build_duration_seconds",
            "Wall time of one build attempt, by the state it ended in",
            ["status"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.stage = Histogram(
            "envstore_build_stage_duration_seconds",
            "Wall time of one stage of a build: solve, install, lock, packing",
            ["stage"],
            buckets=_BUCKETS,
            registry=registry,
        )

    def observe_build(self, db: Session, build_id: int, status: str, seconds: float) -> None:
        self.build.labels(status).observe(seconds)
        for name, took in stage_seconds(db, build_id).items():
            if name in _STAGES:
                self.stage.labels(_STAGES[name]).observe(took)
