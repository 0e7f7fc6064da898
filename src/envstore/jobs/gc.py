"""The garbage collector as a job: once (``envstore gc``) or periodically in ``envstore serve``.

The periodic collector is its own daemon thread: a collection can take a while on a big store
and must not delay the reaper's heartbeat checks.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from envstore.db.engine import session_scope
from envstore.services.gc import GcReport, Retention, collect
from envstore.settings import Settings
from envstore.storage.blobstore import BlobStore

__all__ = ["PeriodicCollector", "retention_from", "run_gc"]

log = logging.getLogger("envstore.gc")


def retention_from(settings: Settings) -> Retention:
    return Retention(
        keep_last=settings.gc_keep_last,
        keep_days=settings.gc_keep_days,
        failed_days=settings.gc_failed_days,
        grace_seconds=settings.gc_grace_seconds,
    )


def run_gc(
    settings: Settings, factory: sessionmaker[Session], blobs: BlobStore, *, dry_run: bool = False
) -> GcReport:
    with session_scope(factory) as db:
        return collect(db, blobs, settings.store_dir, retention_from(settings), dry_run=dry_run)


class PeriodicCollector:
    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], blobs: BlobStore
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.blobs = blobs
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gc", daemon=True)

    def start(self) -> None:
        if self.settings.gc_interval > 0:
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stopping.wait(self.settings.gc_interval):
            try:
                log.info(run_gc(self.settings, self.factory, self.blobs).summary())
            except Exception:
                log.exception("garbage collection failed; will try again")


def run_gc_once(settings: Settings, *, dry_run: bool) -> GcReport:
    """One collection against the configured database and blob store (``envstore gc``)."""
    from envstore.db.engine import make_engine
    from envstore.storage.factory import make_blob_store

    engine = make_engine(settings.resolved_database_url)
    try:
        return run_gc(settings, sessionmaker(engine), make_blob_store(settings), dry_run=dry_run)
    finally:
        engine.dispose()
