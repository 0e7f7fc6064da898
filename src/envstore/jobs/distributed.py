"""The distributed mode's dispatcher and reaper, run by API processes and workers.

Dispatch happens after commit: routes call :meth:`Dispatcher.notify` once the build row is
committed, and a background thread hands the id to the broker, so a request never waits on the
broker. Every send is claimed first (``dispatched_on``, see services/dispatch.py), so the API and
the reaper never both send a build; a send that fails gives its claim back and the reaper sends
the build again later.

The reaper runs in every API process and worker, but only the leader acts: the holder of a
PostgreSQL session advisory lock (released by the server when the leader's connection dies,
so another process takes over on its next pass). On SQLite, a single-host database, every
reaper acts; its updates are conditional, so two passes at once do no harm. Each pass:

- BUILDING builds whose heartbeat stopped (``heartbeat_timeout``) lose their prefix and are
  queued again while attempts remain (``max_build_attempts``), else FAILED ``worker_lost``; a
  requeued build is sent with a backoff (``retry_backoff`` doubling per attempt);
- QUEUED builds never sent, or sent longer ago than ``redispatch_seconds``, are sent again;
- pack jobs (a COMPLETED build's archive and image, ``artifact_job``) the same way: PACKING
  jobs whose heartbeat stopped are queued again (bounded by ``max_build_attempts``, else
  FAILED, the build staying COMPLETED) and sent with the same backoff; QUEUED jobs never sent
  (the broker was down when the build completed) or sent too long ago are sent again;
- every ``gc_interval`` a GC job goes to the ``gc`` queue.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from envstore.core.builds import ArtifactStatus, BuildStatus
from envstore.db.engine import session_scope
from envstore.db.models import utcnow
from envstore.jobs.celery_app import Broker, leader_key
from envstore.services import dispatch, packing
from envstore.services import worker as svc
from envstore.settings import Settings
from envstore.storage.layout import StoreLayout

__all__ = [
    "Dispatcher",
    "Leadership",
    "Reaper",
    "backoff",
    "send_build",
    "send_claimed",
    "send_pack",
]

log = logging.getLogger("envstore.jobs")


def send_claimed(
    build_ids: list[int], send: Callable[[int], None], release: Callable[[list[int]], None]
) -> None:
    """Send jobs whose send this process claimed; if the broker fails partway, the claims of
    those not sent are given back (``release``) and the error goes on to the caller."""
    sent = 0
    try:
        for build_id in build_ids:
            send(build_id)
            sent += 1
    finally:
        if sent < len(build_ids):
            release(build_ids[sent:])


def send_build(broker: Broker, factory: sessionmaker[Session], build_id: int) -> None:
    """Send a just-queued build to the builds queue, unless another sender (the leader reaper)
    claimed it first; if the broker is away, the reaper sends it once the broker is back."""
    now = utcnow()
    with session_scope(factory) as db:
        if dispatch.claim_send(db, build_id, now):
            send_claimed(
                [build_id], broker.send_build, partial(dispatch.release_sends, db, when=now)
            )


def send_pack(broker: Broker, factory: sessionmaker[Session], build_id: int) -> None:
    """Send a just-queued pack job to the artifacts queue, unless another sender claimed it
    first; if the broker is away, the job stays QUEUED and unsent, and the leader reaper sends
    it once the broker is back."""
    now = utcnow()
    try:
        with session_scope(factory) as db:
            if not dispatch.claim_pack_send(db, build_id, now):
                return
            release = partial(dispatch.release_pack_sends, db, when=now)
            send_claimed([build_id], broker.send_pack, release)
        log.info("build %s: pack job sent to the artifacts queue", build_id)
    except Exception as exc:
        log.warning("build %s: pack job not dispatched now (%s); the reaper will", build_id, exc)


def backoff(settings: Settings, attempt: int) -> float:
    """Delay before attempt ``attempt + 1`` of a build whose worker was lost."""
    return float(min(settings.retry_backoff * 2 ** max(attempt - 1, 0), 600.0))


class Leadership:
    """Whether this process leads the reapers (see the module docstring)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.engine = engine
        self.key = leader_key(settings)
        self._connection: Connection | None = None

    def held(self) -> bool:
        if self.engine.dialect.name != "postgresql":
            return True
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                return True
            except Exception:
                self.release()  # the server dropped us, and our lock with us
        try:
            connection = self.engine.connect()
        except Exception:
            return False
        taken = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key})
        if taken.scalar():
            connection.commit()
            self._connection = connection
            return True
        connection.rollback()
        connection.close()
        return False

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class Reaper:
    def __init__(
        self, settings: Settings, engine: Engine, factory: sessionmaker[Session], broker: Broker
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.broker = broker
        self.layout = StoreLayout(settings.envs_dir)
        self.leadership = Leadership(settings, engine)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)
        self._last_gc = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.leadership.release()

    def _loop(self) -> None:
        while not self._stopping.wait(self.settings.reap_interval):
            try:
                if self.leadership.held():
                    self.reap()
            except Exception as exc:  # a database or broker outage: try again next pass
                log.warning("reaper pass failed: %s", exc)

    def reap(self) -> None:
        self._requeue_lost()
        self._dispatch_unsent()
        self._requeue_lost_packs()
        self._dispatch_unsent_packs()
        interval = self.settings.gc_interval
        if interval > 0 and time.monotonic() - self._last_gc >= interval:
            self.broker.send_gc()
            self._last_gc = time.monotonic()

    def _requeue_lost(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.settings.heartbeat_timeout)
        with session_scope(self.factory) as db:
            for lost in dispatch.stale_building(db, cutoff):
                if lost.build_key:
                    self.layout.remove_prefix(lost.namespace, lost.build_key)
                # the dead attempt's scratch directory (its worker cleans only its own)
                shutil.rmtree(self.settings.work_dir / f"{lost.id}-{lost.attempt}", True)
                if lost.cancel_requested:  # a canceled build is never queued again (W11)
                    svc.finish_failed(
                        db, lost.id, BuildStatus.CANCELED, "canceled: by request (worker lost)"
                    )
                    continue
                status = svc.requeue_or_fail(
                    db,
                    lost.id,
                    f"worker_lost: no heartbeat from {lost.worker_id} for "
                    f"{self.settings.heartbeat_timeout:g} s",
                    self.settings.max_build_attempts,
                )
                log.warning("build %s: worker %s lost; now %s", lost.id, lost.worker_id, status)
                if status == BuildStatus.QUEUED:
                    state = dispatch.build_state(db, lost.id)
                    self._send_later(db, lost.id, backoff(self.settings, state[1] if state else 1))

    def _send_later(self, db: Session, build_id: int, delay: float) -> None:
        """Send a requeued build with a countdown; its claim lasts until the countdown ends."""
        when = utcnow() + timedelta(seconds=delay)
        if dispatch.claim_send(db, build_id, when):
            send = partial(self.broker.send_build, countdown=delay)
            send_claimed([build_id], send, partial(dispatch.release_sends, db, when=when))

    def _dispatch_unsent(self) -> None:
        self._send_unsent(
            dispatch.claim_unsent, dispatch.release_sends, self.broker.send_build, "build"
        )

    def _send_unsent(
        self,
        claim: Callable[[Session, datetime, datetime], list[int]],
        release: Callable[[Session, list[int], datetime], None],
        send: Callable[[int], None],
        what: str,
    ) -> None:
        """Send the QUEUED jobs never sent, or sent too long ago (``claim``), to the broker."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.redispatch_seconds)
        with session_scope(self.factory) as db:
            claimed = claim(db, cutoff, now)
            if claimed:
                send_claimed(claimed, send, lambda unsent: release(db, unsent, now))
                log.info("reaper sent %d queued %s(s) to the broker", len(claimed), what)

    def _requeue_lost_packs(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.settings.heartbeat_timeout)
        with session_scope(self.factory) as db:
            for lost in dispatch.stale_packing(db, cutoff):
                # the dead attempt's scratch directory (its worker cleans only its own)
                shutil.rmtree(self.settings.work_dir / f"pack-{lost.build_id}-{lost.attempt}", True)
                status = packing.requeue_pack_or_fail(
                    db,
                    lost.build_id,
                    f"worker_lost: no heartbeat from {lost.worker_id} for "
                    f"{self.settings.heartbeat_timeout:g} s",
                    self.settings.max_build_attempts,
                )
                log.warning(
                    "build %s: packing worker %s lost; now %s",
                    lost.build_id,
                    lost.worker_id,
                    status.value,
                )
                if status == ArtifactStatus.QUEUED:
                    delay = backoff(self.settings, lost.attempt)
                    when = utcnow() + timedelta(seconds=delay)
                    if dispatch.claim_pack_send(db, lost.build_id, when):
                        send = partial(self.broker.send_pack, countdown=delay)
                        release = partial(dispatch.release_pack_sends, db, when=when)
                        send_claimed([lost.build_id], send, release)

    def _dispatch_unsent_packs(self) -> None:
        self._send_unsent(
            dispatch.claim_unsent_packs,
            dispatch.release_pack_sends,
            self.broker.send_pack,
            "pack job",
        )


class Dispatcher:
    """The API side of the distributed mode: the ``Queue`` that routes wake up after a commit."""

    def __init__(
        self, settings: Settings, engine: Engine, factory: sessionmaker[Session], broker: Broker
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.broker = broker
        self.reaper = Reaper(settings, engine, factory, broker)
        self._pending: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send_loop, name="dispatcher", daemon=True)

    def notify(self, build_id: int) -> None:
        self._pending.put(build_id)

    def notify_artifacts(self, build_id: int) -> None:
        """A pack job was queued (``rebuild-artifacts``): send it to the artifacts queue."""
        send_pack(self.broker, self.factory, build_id)

    def start(self) -> None:
        self._thread.start()
        self.reaper.start()

    def stop(self, timeout: float | None = None) -> None:
        self._pending.put(None)
        self._thread.join(timeout=10 if timeout is None else timeout)
        self.reaper.stop()
        self.broker.close()

    def _send_loop(self) -> None:
        while (build_id := self._pending.get()) is not None:
            try:
                self._send(build_id)
            except Exception as exc:  # the reaper sends it once the broker is back (W6)
                log.warning("build %s: not dispatched now (%s); the reaper will", build_id, exc)

    def _send(self, build_id: int) -> None:
        send_build(self.broker, self.factory, build_id)
