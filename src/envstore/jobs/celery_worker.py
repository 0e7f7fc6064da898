"""``envstore worker``: a Celery worker that runs builds and GC for the distributed mode.

The worker uses Celery's thread pool: each slot supervises one build process (the same
:class:`BuildExecutor` as the embedded workers), whose heartbeat, log streaming and cancel
polling go through the database; a cancel requested on any API host reaches the slot that runs
the build at its next heartbeat, which kills the build's process tree. A SIGTERM (warm shutdown:
drain) lets running builds finish within ``shutdown_grace``, then kills and queues them again
without counting the attempt (W3). The build processes die with the worker, even on SIGKILL
(they watch their parent), so nothing keeps writing into a prefix the reaper hands to another
worker (W12).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from celery import Celery, bootsteps, signals
from celery.worker import state as worker_state
from prometheus_client import CollectorRegistry, start_http_server
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from envstore.core.builds import BuildStatus
from envstore.db.engine import make_engine, session_scope
from envstore.db.models import utcnow
from envstore.jobs.celery_app import JOB_KINDS, Broker, make_celery, queue_name, slot_id
from envstore.jobs.distributed import Reaper, backoff, send_claimed, send_pack
from envstore.jobs.events import BuildEvents
from envstore.jobs.executor import BuildExecutor
from envstore.jobs.gc import run_gc
from envstore.jobs.metrics import BuildMetrics
from envstore.jobs.packer import PackExecutor
from envstore.services import dispatch, packing
from envstore.services import worker as svc
from envstore.settings import Settings
from envstore.storage.factory import make_blob_store

__all__ = ["WorkerRuntime", "run_worker"]

log = logging.getLogger("envstore.worker")


@dataclass
class WorkerRuntime:
    """What the tasks of one worker process share."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    executor: BuildExecutor
    packer: PackExecutor
    broker: Broker
    metrics: BuildMetrics
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    @classmethod
    def create(cls, settings: Settings) -> WorkerRuntime:
        engine = make_engine(settings.resolved_database_url)
        factory = sessionmaker(engine, expire_on_commit=False)
        blobs = make_blob_store(settings)
        executor = BuildExecutor(settings, factory, blobs)
        packer = PackExecutor(settings, factory, blobs, executor.runners, BuildEvents())
        registry = CollectorRegistry()
        metrics = BuildMetrics(registry)
        broker = Broker.connect(settings)
        runtime = cls(settings, engine, factory, executor, packer, broker, metrics, registry)
        # after a publish: the archive and image are packed by a task of the artifacts queue
        executor.on_artifacts_queued = runtime._send_pack
        return runtime

    def pack(self, build_id: int) -> str:
        """Run the pack job (archive, image) of ``build_id``; a duplicate delivery is a no-op."""
        worker_id = slot_id()
        with session_scope(self.factory) as db:
            claimed = packing.claim_pack(db, self.settings, build_id, worker_id)
        if claimed is None:  # a duplicate delivery, or taken back by the reaper meanwhile
            return "skipped"
        self.packer.run(claimed, worker_id)
        return "packed"

    def _send_pack(self, build_id: int) -> None:
        send_pack(self.broker, self.factory, build_id)

    def build(self, build_id: int) -> str:
        worker_id = slot_id()
        with session_scope(self.factory) as db:
            claimed = svc.claim(db, build_id, worker_id)
        if claimed is None:  # a duplicate delivery, or canceled meanwhile (W4)
            return "skipped"
        started = time.monotonic()
        self.executor.run(claimed, worker_id)
        with session_scope(self.factory) as db:
            state = dispatch.build_state(db, build_id)
            if state is not None:
                self.metrics.observe_build(db, build_id, state[0], time.monotonic() - started)
        if state is not None and state[0] == BuildStatus.QUEUED:
            self._send_again(build_id, state[1])
        return state[0] if state else "gone"

    def _send_again(self, build_id: int, attempt: int) -> None:
        """A retryable failure or an interrupted attempt: back to the broker (with a backoff
        after a failure); if the broker is away, the reaper sends it later."""
        delay = 0.0 if self.executor.stopping.is_set() else backoff(self.settings, attempt)
        when = utcnow() + timedelta(seconds=delay)  # the claim lasts until the countdown ends
        try:
            with session_scope(self.factory) as db:
                if dispatch.claim_send(db, build_id, when):  # else the reaper sent it already
                    send = partial(self.broker.send_build, countdown=delay)
                    send_claimed([build_id], send, partial(dispatch.release_sends, db, when=when))
        except Exception as exc:
            log.warning("build %s: not sent again now (%s); the reaper will", build_id, exc)

    def gc(self) -> str:
        report = run_gc(self.settings, self.factory, self.executor.blobs)
        log.info(report.summary())
        return report.summary()


# How long a consumer may go on refusing messages while a slot is free before it is taken
# to have lost an acknowledgement with its connection and is made to reconnect (W6c)
_STUCK_AFTER = 5.0


class _ConsumerStuck(ConnectionError):
    """Raised in the consumer's event loop to make Celery reconnect it.

    A connection error, so the event loop hands it to Celery's own reconnect path (the one a
    dropped socket takes): the consumer's connection and channel are closed and opened again.
    """


class _WakeUp(bootsteps.StartStopStep):  # type: ignore[misc]
    """Wake the consumer's event loop every quarter second, and reconnect a consumer that can
    no longer read its queues.

    Wake-up: with the thread pool, a finished task acknowledges its message from a pool
    thread, which does not wake the loop: with prefetch 1, the slot's next message was fetched
    only at the loop's next timer, seconds later. A short timer bounds that wait.

    Watchdog (W6c): on Redis, kombu counts a message as held until its acknowledgement
    reaches Redis. When a task finishes while Redis is away, that acknowledgement fails and
    Celery only logs it ("Couldn't ack"), so the message stays in kombu's prefetch window for
    good. A worker whose every slot was busy through the outage then has a full window: it
    never reads its queues again, so it never notices that its connection died, and takes no
    work until restarted. The tick sees that state (kombu refuses messages while Celery holds
    fewer requests than the worker has slots) and, once it has lasted ``_STUCK_AFTER``
    seconds, raises :class:`_ConsumerStuck`. The reconnect gives a fresh channel with an empty
    window. The lost acknowledgement costs at most a second delivery of a finished job, which
    its claim turns into a no-op (W4); the database remains the truth, and the reaper sends
    again whatever is still QUEUED.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._tick: Any = None
        self._stuck_since: float | None = None

    def start(self, consumer: Any) -> None:
        self._stuck_since = None
        self._tick = consumer.timer.call_repeatedly(0.25, self._check, (consumer,))

    def stop(self, consumer: Any) -> None:
        # a reconnect stops and starts the steps again: one tick per consumer, not one more
        # per reconnect
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def shutdown(self, consumer: Any) -> None:
        self.stop(consumer)

    def _check(self, consumer: Any) -> None:
        if not _window_lost(consumer):
            self._stuck_since = None
            return
        now = time.monotonic()
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= _STUCK_AFTER:
            self._stuck_since = None
            log.warning(
                "the consumer takes no message though a slot is free (an acknowledgement was "
                "lost with the broker connection): reconnecting"
            )
            raise _ConsumerStuck("consumer prefetch window held by lost acknowledgements")


def _window_lost(consumer: Any) -> bool:
    """True when the channel refuses messages while Celery holds fewer requests than the
    worker has slots: some of the window is held by messages whose acknowledgement failed.

    Messages waiting for their countdown are in neither count: Celery widens the window by
    one for each. RabbitMQ keeps the window on the broker side (its channel has no ``qos``
    here) and its heartbeats find a dead connection: the check is for Redis only.
    """
    if consumer.blueprint.state != bootsteps.RUN:
        return False
    qos = getattr(getattr(consumer.task_consumer, "channel", None), "qos", None)
    can_consume = getattr(qos, "can_consume", None)
    if can_consume is None or can_consume():
        return False
    try:
        held = len({*worker_state.reserved_requests, *worker_state.active_requests})
    except RuntimeError:  # changed by a pool thread while copied: look again next tick
        return False
    return held < int(consumer.pool.num_processes)


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=JOB_KINDS["builds"], acks_late=True)  # type: ignore[misc]
    def build(build_id: int) -> str:
        return runtime.build(int(build_id))

    @app.task(name=JOB_KINDS["artifacts"], acks_late=True)  # type: ignore[misc]
    def pack(build_id: int) -> str:
        return runtime.pack(int(build_id))

    @app.task(name=JOB_KINDS["gc"], acks_late=True)  # type: ignore[misc]
    def gc() -> str:
        return runtime.gc()


def run_worker(settings: Settings, concurrency: int, kinds: list[str]) -> None:
    """Serve the queues of ``kinds`` until a signal stops the worker."""
    runtime = WorkerRuntime.create(settings)
    app = make_celery(settings)
    register_tasks(app, runtime)
    app.steps["consumer"].add(_WakeUp)
    reaper = Reaper(settings, runtime.engine, runtime.factory, runtime.broker)
    # The work directory is not cleaned here as the embedded server does: the store may be
    # shared with other workers' running builds (each attempt has its own directory).

    def shutting_down(**_: Any) -> None:
        runtime.executor.stop(settings.shutdown_grace)

    signals.worker_shutting_down.connect(shutting_down, weak=False)
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, registry=runtime.registry)
    reaper.start()
    queues = ",".join(queue_name(settings, kind) for kind in kinds)
    try:
        app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={queues}",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "--loglevel=INFO",
                f"--hostname=envstore-{os.getpid()}@%h",
            ]
        )
    finally:
        reaper.stop()
        runtime.executor.runners.close_all()
        runtime.broker.close()
        runtime.engine.dispose()
