"""The embedded job queue: a bounded pool of worker threads inside ``envstore serve``.

The database is the queue: workers claim QUEUED builds with a conditional update, so a build
submitted while every worker is busy, or left QUEUED by a previous server, is picked up when a
worker frees up. Each worker thread supervises one child process at a time, so at most
``workers`` builds run at once (W9). A reaper requeues or fails builds whose worker died (W1).
When no build is queued, workers pack the archives and images of COMPLETED builds (pack jobs,
:mod:`envstore.jobs.packer`), never on the last free worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from envstore.db.engine import session_scope
from envstore.db.models import utcnow
from envstore.errors import Unavailable
from envstore.jobs.events import BuildEvents
from envstore.jobs.executor import BuildExecutor
from envstore.jobs.packer import PackExecutor
from envstore.jobs.wakeups import IdleWorkers
from envstore.services import packing
from envstore.services import worker as svc
from envstore.settings import Settings
from envstore.storage.blobstore import BlobStore
from envstore.storage.layout import StoreLayout

__all__ = ["InProcessQueue", "Queue"]

log = logging.getLogger("envstore.jobs")


class Queue(Protocol):
    def notify(self, build_id: int) -> None:
        """A build was queued (or canceled): wake a worker."""
        ...

    def notify_artifacts(self, build_id: int) -> None:
        """A pack job was queued for ``build_id`` (``rebuild-artifacts``): wake a worker."""
        ...

    def start(self) -> None: ...

    def stop(self, timeout: float | None = None) -> None: ...


class InProcessQueue:
    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        events: BuildEvents | None = None,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.events = events or BuildEvents()
        self.executor = BuildExecutor(settings, factory, blobs, self.events)
        self.packer = PackExecutor(settings, factory, blobs, self.executor.runners, self.events)
        # Packing never takes the last free worker: a build submitted meanwhile starts at once.
        self._pack_slots = threading.BoundedSemaphore(max(1, settings.workers - 1))
        self.layout = StoreLayout(settings.envs_dir)
        self._idle = IdleWorkers(settings.workers)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        host = socket.gethostname()
        self.worker_ids = [f"{host}:{os.getpid()}:{n}" for n in range(settings.workers)]

    def notify(self, build_id: int) -> None:
        self._idle.wake_one()

    def notify_artifacts(self, build_id: int) -> None:
        self.notify(build_id)

    def start(self) -> None:
        self.reap()
        for worker_id in self.worker_ids:
            thread = threading.Thread(
                target=self._work, args=(worker_id,), name=f"worker-{worker_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        reaper.start()
        self._threads.append(reaper)

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking builds; running ones get ``shutdown_grace`` seconds to finish, then are
        killed and queued again for the next start."""
        grace = self.settings.shutdown_grace if timeout is None else timeout
        self._stopping.set()
        self.executor.stop(grace)
        self.packer.stop()
        self._idle.wake_all()
        for thread in self._threads:
            thread.join(timeout=grace + 15)
        self.executor.runners.close_all()

    def _work(self, worker_id: str) -> None:
        # No runner is started ahead of the first build: a server that has not built for
        # runner_idle_seconds holds no build process (and idles in the API's memory alone).
        wake = threading.Event()
        while not self._stopping.is_set():
            try:
                claimed = self._claim(worker_id)
            except Unavailable:
                claimed = None
            if claimed is not None:
                try:
                    self.executor.run(claimed, worker_id)
                except Exception:
                    log.exception("build %s: worker error", claimed.id)
                continue
            if self._pack_one(worker_id):
                continue
            self.executor.runners.retire_idle()
            self._idle.wait(wake, timeout=2.0)

    def _pack_one(self, worker_id: str) -> bool:
        """Claim and run one pack job, the lower priority: only when no build is queued, and
        on at most ``workers - 1`` workers at once. False when there was none to run."""
        if not self._pack_slots.acquire(blocking=False):
            return False
        try:
            try:
                with session_scope(self.factory) as db:
                    claimed = next(
                        (
                            job
                            for build_id in packing.next_packs(db)
                            if (job := packing.claim_pack(db, self.settings, build_id, worker_id))
                        ),
                        None,
                    )
            except Unavailable:
                return False
            if claimed is None:
                return False
            try:
                self.packer.run(claimed, worker_id)
            except Exception:
                log.exception("build %s: pack error", claimed.build_id)
            return True
        finally:
            self._pack_slots.release()

    def _claim(self, worker_id: str) -> svc.ClaimedBuild | None:
        with session_scope(self.factory) as db:
            queued = svc.next_queued(db)
            for position, build_id in enumerate(queued, start=1):
                claimed = svc.claim(db, build_id, worker_id)
                if claimed is not None:
                    self.events.changed(build_id)
                    if position < len(queued):  # more are queued: one wake-up per build
                        self._idle.wake_one()
                    return claimed
        return None

    def _reap_loop(self) -> None:
        while not self._stopping.wait(self.settings.heartbeat_timeout / 2):
            with contextlib.suppress(Exception):
                self.reap()

    def reap(self) -> None:
        """Requeue (or fail, after the last attempt) builds whose worker is gone; remove their
        unpublished prefixes and orphan work directories."""
        live = set(self.worker_ids)
        cutoff = utcnow() - timedelta(seconds=self.settings.heartbeat_timeout)
        with session_scope(self.factory) as db:
            for build_id, key, namespace, worker_id, beat in svc.building_builds(db):
                stale = beat is None or beat < cutoff
                if worker_id in live:
                    # ours: lost only if that worker is not running it (and has not for a while)
                    if self.executor.running.get(worker_id) == build_id or not stale:
                        continue
                elif not (_worker_dead(worker_id) or stale):
                    continue
                if key:
                    self.layout.remove_prefix(namespace, key)
                status = svc.requeue_or_fail(
                    db,
                    build_id,
                    "worker_lost: the worker stopped",
                    self.settings.max_build_attempts,
                    worker_id,
                )
                log.warning("build %s: worker %s lost; now %s", build_id, worker_id, status.value)
            for build_id, worker_id, beat in packing.packing_jobs(db):
                if worker_id in live:
                    continue
                if not (_worker_dead(worker_id) or beat is None or beat < cutoff):
                    continue
                pack_status = packing.requeue_pack_or_fail(
                    db,
                    build_id,
                    "worker_lost: the worker stopped",
                    self.settings.max_build_attempts,
                )
                log.warning("build %s: packing lost; now %s", build_id, pack_status.value)
        self.notify(0)


def _worker_dead(worker_id: str | None) -> bool:
    """True when ``worker_id`` names a process on this host that no longer runs (or is us)."""
    if not worker_id or worker_id.count(":") != 2:
        return False
    host, pid, _ = worker_id.split(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # one of our own ids that is not live: a previous life of this process id
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def clean_work_dir(settings: Settings) -> None:
    """Remove scratch directories left by a previous server (nothing runs yet at start)."""
    shutil.rmtree(settings.work_dir, ignore_errors=True)
